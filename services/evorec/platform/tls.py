"""Transport security: the `tls` settings, and the gRPC credentials built from them.

One certificate per process: its servers present it, and its clients present it to servers
that require client certificates (mutual TLS), so a service's identity is the same whichever
way a call goes. With nothing set, servers and clients speak plaintext, the embedded default
on loopback.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import grpc
from pydantic import Field, FilePath, field_validator, model_validator

from evorec.platform.authorization import validate_rules
from evorec.platform.section import Section


class TlsSettings(Section):
    """TLS of every server and client of the process (`EVOREC_TLS__...`, `[tls]`)."""

    # PEM certificate chain and private key of this process (a Kubernetes Secret of type
    # kubernetes.io/tls mounts them as tls.crt and tls.key). Set: servers listen with TLS
    # only, and clients present them where a server asks for a client certificate.
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    # PEM bundle of the CAs that sign peers' certificates (the Secret's ca.crt): clients
    # verify servers with it, servers verify client certificates with it. Unset: clients
    # trust the system's roots. Set alone (no cert_file): clients speak TLS, as a command-line
    # tool does against TLS servers that need no client certificate.
    ca_file: FilePath | None = None
    # Mutual TLS: servers refuse, at the handshake, any caller without a certificate that
    # ca_file verifies (none, expired, another CA's).
    require_client_cert: bool = False
    # Who may call what, by the identity of the client certificate (see
    # evorec.platform.authorization): {"evorec.v1.InterestService/DeleteUser": ["admin"],
    # "evorec.v1.RankingService": ["*"], ...}. Empty: no per-RPC authorization.
    authorization: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("authorization")
    @classmethod
    def _known_rpcs(cls, rules: dict[str, list[str]]) -> dict[str, list[str]]:
        return validate_rules(rules)

    @model_validator(mode="after")
    def _consistent(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        if self.require_client_cert and (self.cert_file is None or self.ca_file is None):
            raise ValueError("require_client_cert needs cert_file, key_file and ca_file")
        if self.authorization and not self.require_client_cert:
            # Without it, gRPC does not even ask for a client certificate: no caller would
            # have an identity to authorize.
            raise ValueError("an authorization policy needs require_client_cert = true")
        return self

    @property
    def server_enabled(self) -> bool:
        """Whether servers listen with TLS."""
        return self.cert_file is not None

    @property
    def client_enabled(self) -> bool:
        """Whether clients dial with TLS."""
        return self.cert_file is not None or self.ca_file is not None

    def describe(self) -> str:
        """How a server of these settings listens, for its start-up log line."""
        if not self.server_enabled:
            return "plaintext"
        if not self.require_client_cert:
            return "TLS"
        return "mutual TLS" + (" with per-RPC authorization" if self.authorization else "")


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """The credentials of a TLS server port (server_enabled must hold)."""
    key, cert = _read(tls.key_file), _read(tls.cert_file)
    if key is None or cert is None:
        raise ValueError("server TLS needs cert_file and key_file")
    return grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=_read(tls.ca_file),
        require_client_auth=tls.require_client_cert,
    )


def channel_credentials(tls: TlsSettings) -> grpc.ChannelCredentials | None:
    """The credentials of a client channel; None for plaintext."""
    if not tls.client_enabled:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca_file),
        private_key=_read(tls.key_file),
        certificate_chain=_read(tls.cert_file),
    )


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host`; a name other than localhost may resolve
    anywhere, so it counts as beyond loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
