"""TLS, mutual TLS and per-RPC authorization, against real servers on loopback, with a CA
made here: who is refused at the handshake, who is denied by the policy, who is served."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import os
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from evorec.platform.authorization import Policy, caller_identities, validate_rules
from evorec.platform.clients import interest_client
from evorec.platform.config import ConfigError, Settings, load_settings
from evorec.platform.errors import PermissionDenied, Unauthenticated
from evorec.platform.probes import check_health
from evorec.platform.server import GrpcService, RunningServer, start_server
from evorec.platform.tls import TlsSettings, channel_credentials, is_loopback
from evorec.v1 import interest_pb2, interest_pb2_grpc, ranking_pb2, ranking_pb2_grpc
from tests.conftest import ROOT

INTEREST = "evorec.v1.InterestService"
INGEST_SPIFFE_ID = "spiffe://evorec.test/ns/prod/sa/ingest"
POLICY = {
    f"{INTEREST}/GetRecentItems": ["ranking"],
    f"{INTEREST}/DeleteUser": ["admin"],
    f"{INTEREST}/StreamEvents": [INGEST_SPIFFE_ID],
    INTEREST: ["ranking", "admin"],
    "evorec.v1.RankingService/Recommend": ["*"],
    "grpc.reflection.v1alpha.ServerReflection": ["admin"],
}
NOW = dt.datetime.now(dt.UTC)
HOUR = dt.timedelta(hours=1)


# --- a CA and its certificates, made for the test -------------------------------------------


@dataclass(frozen=True)
class Identity:
    cert: Path
    key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class Authority:
    """A certificate authority that issues leaf certificates as PEM files in `directory`."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - HOUR)
            .not_valid_after(NOW + 24 * HOUR)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert = directory / f"{name}.crt"
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        file_name: str,
        common_name: str,
        sans: list[x509.GeneralName],
        not_after: dt.datetime = NOW + 24 * HOUR,
    ) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_after - 48 * HOUR)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        identity = Identity(
            self.directory / f"{file_name}.crt", self.directory / f"{file_name}.key"
        )
        identity.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(identity.key, key)
        return identity


def _spiffe(name: str) -> x509.GeneralName:
    return x509.UniformResourceIdentifier(f"spiffe://evorec.test/{name}")


def _loopback_sans(name: str) -> list[x509.GeneralName]:
    """What a server's certificate names: the hosts its clients dial, and its SPIFFE ID."""
    return [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        _spiffe(name),
    ]


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Identity
    clients: dict[str, Identity]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA; a server certificate for 127.0.0.1 and localhost; client certificates for
    ranking, admin and other (each a CN and a SPIFFE ID); one whose SPIFFE ID alone is in the
    policy; an expired admin certificate; an admin certificate of another CA; and server
    certificates for the real preprocess and embedding services."""
    directory = tmp_path_factory.mktemp("pki")
    ca = Authority(directory, "evorec-test-ca")
    server = ca.issue("interest", "interest", _loopback_sans("interest"))
    clients = {
        name: ca.issue(name, name, [_spiffe(name)]) for name in ("ranking", "admin", "other")
    }
    clients["ingest"] = ca.issue(
        "ingest", "ingest-7f9c", [x509.UniformResourceIdentifier(INGEST_SPIFFE_ID)]
    )
    # The ingest SPIFFE ID written as a DNS name and as an email address, not as a URI: a CA
    # that lets a workload choose its DNS names must not let it claim another's SPIFFE ID.
    clients["ingest-as-other-names"] = ca.issue(
        "ingest-as-other-names",
        "ingest-7f9c",
        [x509.DNSName(INGEST_SPIFFE_ID), x509.RFC822Name(INGEST_SPIFFE_ID)],
    )
    clients["expired"] = ca.issue("expired", "admin", [_spiffe("admin")], not_after=NOW - HOUR)
    clients["foreign"] = Authority(directory, "another-ca").issue(
        "foreign", "admin", [_spiffe("admin")]
    )
    for name in ("preprocess", "embedding"):  # the real services', server and client alike
        clients[name] = ca.issue(name, name, _loopback_sans(name))
    return Pki(ca.cert, server, clients)


# --- a server with the policy above, and clients of it ----------------------------------------


class FakeInterest(interest_pb2_grpc.InterestServiceServicer):
    """Answers the RPCs under test with empty responses, recording which ran."""

    def __init__(self) -> None:
        self.served: list[str] = []

    async def GetRecentItems(self, request: Any, context: Any) -> Any:
        self.served.append("GetRecentItems")
        return interest_pb2.GetRecentItemsResponse()

    async def DeleteUser(self, request: Any, context: Any) -> Any:
        self.served.append("DeleteUser")
        return interest_pb2.DeleteUserResponse()

    async def GetUserHistory(self, request: Any, context: Any) -> Any:
        self.served.append("GetUserHistory")
        return interest_pb2.GetUserHistoryResponse()

    async def StreamEvents(self, request_iterator: Any, context: Any) -> Any:
        async for _request in request_iterator:
            pass
        self.served.append("StreamEvents")
        return interest_pb2.StreamEventsResponse()


class FakeRanking(ranking_pb2_grpc.RankingServiceServicer):
    async def Recommend(self, request: Any, context: Any) -> Any:
        return ranking_pb2.RecommendResponse()


def fake_service(interest: FakeInterest) -> GrpcService:
    def register(server: grpc.aio.Server) -> None:
        interest_pb2_grpc.add_InterestServiceServicer_to_server(interest, server)
        ranking_pb2_grpc.add_RankingServiceServicer_to_server(FakeRanking(), server)

    return GrpcService(name=INTEREST, register=register)


def server_tls(pki: Pki, **changes: Any) -> TlsSettings:
    """Mutual TLS with the test policy, unless `changes` say otherwise."""
    values: dict[str, Any] = {
        "cert_file": pki.server.cert,
        "key_file": pki.server.key,
        "ca_file": pki.ca,
        "require_client_cert": True,
        "authorization": POLICY,
    }
    return TlsSettings.model_validate({**values, **changes})


def client_tls(pki: Pki, who: str | None) -> TlsSettings:
    """A client's TLS settings: the CA, and `who`'s certificate unless None."""
    if who is None:
        return TlsSettings(ca_file=pki.ca)
    identity = pki.clients[who]
    return TlsSettings(ca_file=pki.ca, cert_file=identity.cert, key_file=identity.key)


@dataclass(frozen=True)
class Served:
    """A started fake server and what its servicer ran."""

    server: RunningServer
    interest: FakeInterest

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@pytest.fixture
async def serve(settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    """`await serve(tls, host=..., health_port=...)` starts the fake service on a free port."""
    running: list[RunningServer] = []

    async def start(
        tls: TlsSettings | None, host: str = "127.0.0.1", health_port: int | None = None
    ) -> Served:
        endpoint = settings.preprocess.model_copy(update={"host": host, "health_port": health_port})
        interest = FakeInterest()
        server = await start_server(fake_service(interest), endpoint, settings.server, tls)
        running.append(server)
        await server.ready()
        return Served(server, interest)

    yield start
    for server in running:
        await server.shutdown()


def open_channel_to(target: str, tls: TlsSettings | None) -> grpc.aio.Channel:
    credentials = None if tls is None else channel_credentials(tls)
    if credentials is None:
        return grpc.aio.insecure_channel(target)
    return grpc.aio.secure_channel(target, credentials)


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str = ""


async def call(served: Served, tls: TlsSettings | None, rpc: str) -> Outcome:
    """Calls `rpc` of the fake server as the client `tls` describes (None: plaintext)."""
    async with open_channel_to(served.target, tls) as channel:
        interest = interest_pb2_grpc.InterestServiceStub(channel)
        ranking = ranking_pb2_grpc.RankingServiceStub(channel)
        calls: dict[str, Callable[[], Any]] = {
            "GetRecentItems": lambda: interest.GetRecentItems(
                interest_pb2.GetRecentItemsRequest(user_id="u1"), timeout=5
            ),
            "DeleteUser": lambda: interest.DeleteUser(
                interest_pb2.DeleteUserRequest(user_id="u1"), timeout=5
            ),
            "GetUserHistory": lambda: interest.GetUserHistory(
                interest_pb2.GetUserHistoryRequest(user_id="u1"), timeout=5
            ),
            "StreamEvents": lambda: interest.StreamEvents(
                iter([interest_pb2.StreamEventsRequest()]), timeout=5
            ),
            "Recommend": lambda: ranking.Recommend(
                ranking_pb2.RecommendRequest(user_id="u1"), timeout=5
            ),
            "RecommendBatch": lambda: ranking.RecommendBatch(
                ranking_pb2.RecommendBatchRequest(), timeout=5
            ),
        }
        try:
            await calls[rpc]()
        except grpc.aio.AioRpcError as error:
            return Outcome(error.code(), error.details() or "")
    return Outcome(grpc.StatusCode.OK)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def health(target: str, tls: TlsSettings | None, service: str = INTEREST) -> Outcome:
    async with open_channel_to(target, tls) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5
            )
        except grpc.aio.AioRpcError as error:
            return Outcome(error.code(), error.details() or "")
    return Outcome(
        grpc.StatusCode.OK, health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    )


# --- the handshake: who never reaches a handler -----------------------------------------------


@pytest.mark.parametrize(
    "client",
    ["plaintext", "no certificate", "expired", "another CA"],
)
async def test_mutual_tls_refuses_callers_without_a_valid_certificate(
    serve: Any, pki: Pki, client: str
) -> None:
    served = await serve(server_tls(pki))
    tls = {
        "plaintext": None,
        "no certificate": client_tls(pki, None),
        "expired": client_tls(pki, "expired"),
        "another CA": client_tls(pki, "foreign"),
    }[client]

    # Refused at the handshake: the call cannot even connect, whatever the RPC.
    for rpc in ("Recommend", "DeleteUser"):
        assert (await call(served, tls, rpc)).code == grpc.StatusCode.UNAVAILABLE
    assert (await health(served.target, tls)).code == grpc.StatusCode.UNAVAILABLE
    assert served.interest.served == []


async def test_a_client_refuses_a_server_its_ca_did_not_sign(serve: Any, pki: Pki) -> None:
    foreign = pki.clients["foreign"]
    served = await serve(
        TlsSettings(cert_file=foreign.cert, key_file=foreign.key)  # another CA's certificate
    )

    outcome = await call(served, client_tls(pki, "admin"), "DeleteUser")

    assert outcome.code == grpc.StatusCode.UNAVAILABLE
    assert served.interest.served == []


# --- the policy: who is denied, who is served -------------------------------------------------


@pytest.mark.parametrize(
    ("who", "rpc"),
    [
        ("other", "DeleteUser"),
        ("ranking", "DeleteUser"),
        ("admin", "GetRecentItems"),
        ("other", "GetUserHistory"),  # the service's rule names ranking and admin only
        ("admin", "StreamEvents"),  # client streaming: only the ingest SPIFFE ID
    ],
)
async def test_a_wrong_identity_is_denied_naming_the_rpc_and_the_caller(
    serve: Any, pki: Pki, caplog: pytest.LogCaptureFixture, who: str, rpc: str
) -> None:
    served = await serve(server_tls(pki))

    with caplog.at_level(logging.WARNING, logger="evorec.authorization"):
        outcome = await call(served, client_tls(pki, who), rpc)

    assert outcome.code == grpc.StatusCode.PERMISSION_DENIED
    assert f"{INTEREST}/{rpc}" in outcome.details
    assert f"spiffe://evorec.test/{who}" in outcome.details
    assert served.interest.served == []
    denials = [r.getMessage() for r in caplog.records if r.name == "evorec.authorization"]
    assert len(denials) == 1
    assert denials[0].startswith(f"denied: {outcome.details} (peer ipv4:127.0.0.1:")


async def test_an_rpc_no_rule_names_is_denied_even_to_an_admin(serve: Any, pki: Pki) -> None:
    served = await serve(server_tls(pki))

    outcome = await call(served, client_tls(pki, "admin"), "RecommendBatch")

    assert outcome.code == grpc.StatusCode.PERMISSION_DENIED
    assert "no rule of the policy names it" in outcome.details


@pytest.mark.parametrize(
    ("who", "rpc"),
    [
        ("admin", "DeleteUser"),
        ("ranking", "GetRecentItems"),
        ("ranking", "GetUserHistory"),  # by the service's rule
        ("ingest", "StreamEvents"),  # by its SPIFFE ID; its CN (ingest-7f9c) is in no rule
        ("other", "Recommend"),  # "*": anyone authenticated
    ],
)
async def test_the_right_identity_is_served(serve: Any, pki: Pki, who: str, rpc: str) -> None:
    served = await serve(server_tls(pki))

    outcome = await call(served, client_tls(pki, who), rpc)

    assert outcome == Outcome(grpc.StatusCode.OK)
    if rpc != "Recommend":
        assert served.interest.served == [rpc]


async def test_denials_are_counted_in_the_metrics_by_their_code(serve: Any, pki: Pki) -> None:
    served = await serve(server_tls(pki))
    # Denied, served, denied again: the handler kept for the method checks every call.
    for who in ("other", "other", "admin", "other"):
        await call(served, client_tls(pki, who), "DeleteUser")

    metrics = await asyncio.to_thread(scrape, served.server.metrics_port)

    labels = f'grpc_method="DeleteUser",grpc_service="{INTEREST}",grpc_type="unary"'
    assert f'grpc_server_handled_total{{grpc_code="PERMISSION_DENIED",{labels}}} 3.0' in metrics
    assert f'grpc_server_handled_total{{grpc_code="OK",{labels}}} 1.0' in metrics


@pytest.mark.parametrize(("who", "expected"), [("admin", "OK"), ("other", "PERMISSION_DENIED")])
async def test_reflection_a_bidirectional_stream_is_under_the_policy_too(
    serve: Any, pki: Pki, who: str, expected: str
) -> None:
    served = await serve(server_tls(pki))
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    async with open_channel_to(served.target, client_tls(pki, who)) as channel:
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([request]), timeout=5
        )
        try:
            responses = [response async for response in stream]
            code = "OK"
        except grpc.aio.AioRpcError as error:
            code = error.code().name

    assert code == expected
    if code == "OK":
        listed = {s.name for s in responses[0].list_services_response.service}
        assert INTEREST in listed


# --- TLS without client certificates, and plaintext ---------------------------------------


async def test_server_only_tls_serves_callers_without_a_certificate_but_not_plaintext(
    serve: Any, pki: Pki
) -> None:
    served = await serve(server_tls(pki, require_client_cert=False, authorization={}))

    assert (await call(served, client_tls(pki, None), "DeleteUser")).code == grpc.StatusCode.OK
    assert (await call(served, None, "DeleteUser")).code == grpc.StatusCode.UNAVAILABLE


async def test_without_tls_settings_everything_stays_plaintext(serve: Any) -> None:
    served = await serve(None)

    assert (await call(served, None, "DeleteUser")).code == grpc.StatusCode.OK


# --- probes -----------------------------------------------------------------------------------


async def test_health_answers_every_verified_certificate_whatever_the_policy(
    serve: Any, pki: Pki
) -> None:
    served = await serve(server_tls(pki))

    # "other" may call nothing of InterestService, yet its probe is answered.
    assert await health(served.target, client_tls(pki, "other")) == Outcome(
        grpc.StatusCode.OK, "SERVING"
    )


async def test_the_plaintext_health_port_serves_health_and_nothing_else(
    serve: Any, pki: Pki
) -> None:
    served = await serve(server_tls(pki), health_port=0)
    assert served.server.health_port not in (None, 0, served.server.port)
    health_target = f"127.0.0.1:{served.server.health_port}"

    assert await health(health_target, None) == Outcome(grpc.StatusCode.OK, "SERVING")
    assert await health(health_target, None, "") == Outcome(grpc.StatusCode.OK, "SERVING")
    async with grpc.aio.insecure_channel(health_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await interest_pb2_grpc.InterestServiceStub(channel).DeleteUser(
                interest_pb2.DeleteUserRequest(user_id="u1"), timeout=5
            )
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert served.interest.served == []

    async with grpc.aio.insecure_channel(health_target) as channel:
        # Check only: idle Watch streams would take every call this port allows.
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await watch.read()
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # Malformed bytes are the caller's fault, not UNKNOWN.
        garbage = channel.unary_unary("/grpc.health.v1.Health/Check")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await garbage(b"\xff\xff\xff", timeout=5)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # It follows the service's status: NOT_SERVING while draining.
    await served.server.set_serving(False)
    assert await health(health_target, None) == Outcome(grpc.StatusCode.OK, "NOT_SERVING")


async def test_the_images_health_check_asks_the_health_port_of_a_tls_service(
    serve: Any, pki: Pki
) -> None:
    """It asked the TLS port in plaintext, so a container serving TLS was never healthy."""
    served = await serve(server_tls(pki), health_port=0)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")},
        "EVOREC_INTEREST__PORT": str(served.server.port),
        "EVOREC_TLS__CERT_FILE": str(pki.clients["admin"].cert),
        "EVOREC_TLS__KEY_FILE": str(pki.clients["admin"].key),
        "EVOREC_TLS__CA_FILE": str(pki.ca),
    }

    def check(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "deploy" / "healthcheck.py"), "interest"],
            env={**environment, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    on_health_port = await asyncio.to_thread(
        check, EVOREC_INTEREST__HEALTH_PORT=str(served.server.health_port)
    )
    assert on_health_port.returncode == 0, on_health_port.stdout + on_health_port.stderr
    assert "SERVING" in on_health_port.stdout
    # Without a health port it asks the TLS port over TLS (this certificate names 127.0.0.1).
    on_tls_port = await asyncio.to_thread(check)
    assert on_tls_port.returncode == 0, on_tls_port.stdout + on_tls_port.stderr


async def test_typed_clients_and_the_health_probe_use_the_tls_settings(
    serve: Any, pki: Pki, settings: Settings
) -> None:
    served = await serve(server_tls(pki))
    as_ranking = settings.model_copy(
        update={
            "tls": client_tls(pki, "ranking"),
            "interest": settings.interest.model_copy(update={"port": served.server.port}),
        }
    )

    async with interest_client(as_ranking) as interest:
        await interest.stub.GetRecentItems(interest_pb2.GetRecentItemsRequest(user_id="u1"))
    assert served.interest.served == ["GetRecentItems"]

    def probes() -> tuple[str, str]:
        with_tls = check_health(served.target, INTEREST, 5, channel_credentials(as_ranking.tls))
        plaintext = check_health(served.target, INTEREST, 5)
        return with_tls, plaintext

    assert await asyncio.to_thread(probes) == ("SERVING", "UNAVAILABLE")


# --- the real services, calling each other ------------------------------------------------


async def test_real_services_call_each_other_with_their_own_certificates(
    pki: Pki, settings: Settings, prepared: Path
) -> None:
    from evorec.platform.registry import create_service
    from evorec.v1 import embedding_pb2, embedding_pb2_grpc

    policy = {
        "evorec.v1.PreprocessService": ["embedding"],
        "evorec.v1.EmbeddingService/EmbedTexts": ["admin"],
    }

    def as_service(identity: Identity, **changes: Any) -> Settings:
        tls = server_tls(pki, authorization=policy, cert_file=identity.cert, key_file=identity.key)
        return settings.model_copy(update={"tls": tls, "dataset": prepared, **changes})

    running: list[RunningServer] = []

    async def start(name: str, service_settings: Settings) -> RunningServer:
        server = await start_server(
            create_service(name, service_settings),
            service_settings.endpoint(name),
            service_settings.server,
            service_settings.tls,
        )
        running.append(server)
        await server.ready()
        return server

    async def embed_as_admin(embedding: RunningServer) -> Outcome:
        async with open_channel_to(
            f"127.0.0.1:{embedding.port}", client_tls(pki, "admin")
        ) as channel:
            try:
                await embedding_pb2_grpc.EmbeddingServiceStub(channel).EmbedTexts(
                    embedding_pb2.EmbedTextsRequest(texts=["anything at all"]), timeout=10
                )
            except grpc.aio.AioRpcError as error:
                return Outcome(error.code(), error.details() or "")
        return Outcome(grpc.StatusCode.OK)

    try:
        preprocess = await start("preprocess", as_service(pki.clients["preprocess"]))
        to_preprocess = settings.preprocess.model_copy(update={"port": preprocess.port})
        # embedding -> preprocess, as "embedding": allowed.
        embedding = await start(
            "embedding", as_service(pki.clients["embedding"], preprocess=to_preprocess)
        )
        assert await embed_as_admin(embedding) == Outcome(grpc.StatusCode.OK)
        # The same service holding another identity (CN interest) is denied by preprocess.
        impostor = await start("embedding", as_service(pki.server, preprocess=to_preprocess))
        outcome = await embed_as_admin(impostor)
        assert outcome.code == grpc.StatusCode.UNAVAILABLE
        assert outcome.details.startswith("PreprocessService: PERMISSION_DENIED")
        assert "interest, spiffe://evorec.test/interest may not call" in outcome.details
    finally:
        for server in reversed(running):
            await server.shutdown()


# --- TF Serving's channel --------------------------------------------------------------------


async def test_the_tf_serving_channel_speaks_mutual_tls_when_configured(pki: Pki) -> None:
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from evorec.encoder.backends import TFServingBackend
    from evorec.encoder.settings import ServingSettings
    from evorec.platform.config import ClientSettings, ServerSettings
    from evorec.platform.tls import server_credentials

    class LabelledVersion(prediction_service_pb2_grpc.PredictionServiceServicer):
        """Answers any Predict as version 7, as TF Serving resolves a label."""

        async def Predict(self, request: Any, context: Any) -> Any:
            response = predict_pb2.PredictResponse()
            response.model_spec.version.value = 7
            return response

    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(LabelledVersion(), server)
    # TF Serving's ssl_config with client_verify: a client certificate is required.
    tls = server_tls(pki, authorization={})
    port = server.add_secure_port("127.0.0.1:0", server_credentials(tls))
    await server.start()
    serving = ServingSettings(tf_serving_target=f"127.0.0.1:{port}", version_label="stable")
    try:
        for tf_serving_tls, expected in ((True, 7), (False, grpc.StatusCode.UNAVAILABLE)):
            backend = TFServingBackend(
                serving.model_copy(update={"tf_serving_tls": tf_serving_tls}),
                ClientSettings(retry_max_attempts=1),
                ServerSettings(),
                client_tls(pki, "ranking"),
            )
            try:
                answer: Any = await backend.pick_version([1])
            except grpc.aio.AioRpcError as error:
                answer = error.code()
            finally:
                await backend.close()
            assert answer == expected
    finally:
        await server.stop(None)


def test_tf_serving_tls_without_a_ca_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOREC_SERVING__TF_SERVING_TLS", "true")

    with pytest.raises(ConfigError, match="needs EVOREC_TLS__CA_FILE"):
        _load(monkeypatch)


# --- the warning beyond loopback ----------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "with_tls", "warns"),
    [("0.0.0.0", False, True), ("127.0.0.1", False, False), ("0.0.0.0", True, False)],
)
async def test_listening_beyond_loopback_without_tls_logs_a_warning(
    serve: Any, pki: Pki, caplog: pytest.LogCaptureFixture, host: str, with_tls: bool, warns: bool
) -> None:
    tls = server_tls(pki, require_client_cert=False, authorization={}) if with_tls else None
    with caplog.at_level(logging.WARNING, logger="evorec.server"):
        await serve(tls, host=host)

    warnings = [r for r in caplog.records if "without TLS" in r.getMessage()]
    assert len(warnings) == (1 if warns else 0)
    if warns:
        assert warnings[0].levelno == logging.WARNING
        assert "0.0.0.0" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("interest.evorec.svc", False),  # a name may resolve anywhere
    ],
)
def test_loopback_is_told_apart_from_everything_else(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# --- the policy and the settings, without servers -------------------------------------------


def test_the_most_specific_rule_decides() -> None:
    policy = Policy({"*": ["admin"], INTEREST: ["ranking"], f"{INTEREST}/DeleteUser": ["ops"]})

    assert policy.allowed(f"{INTEREST}/DeleteUser") == ["ops"]
    assert policy.allowed(f"{INTEREST}/GetUserHistory") == ["ranking"]
    assert policy.allowed("evorec.v1.RankingService/Recommend") == ["admin"]
    with pytest.raises(PermissionDenied):
        policy.check(f"{INTEREST}/DeleteUser", {"admin"})  # the method's rule, not "*"
    with pytest.raises(Unauthenticated):
        policy.check(f"{INTEREST}/DeleteUser", set())
    policy.check("grpc.health.v1.Health/Check", set())  # health: always allowed


async def test_a_spiffe_id_counts_only_as_a_uri_of_the_certificate(serve: Any, pki: Pki) -> None:
    served = await serve(server_tls(pki))
    outcome = await call(served, client_tls(pki, "ingest-as-other-names"), "StreamEvents")
    assert outcome.code == grpc.StatusCode.PERMISSION_DENIED
    assert served.interest.served == []
    assert (await call(served, client_tls(pki, "ingest"), "StreamEvents")).code == (
        grpc.StatusCode.OK
    )


def test_identities_are_the_common_name_and_spiffe_ids_only() -> None:
    auth_context = {
        "x509_common_name": [b"ranking"],
        "x509_subject_alternative_name": [
            b"spiffe://evorec.test/ranking",
            b"spiffe://evorec.test/admin",  # a DNS name or an email entry: not an identity
            b"ranking.evorec.svc",
            b"https://evil.example/admin",
        ],
        "peer_uri": [b"spiffe://evorec.test/ranking", b"https://evil.example/admin"],
    }

    assert caller_identities(auth_context) == {"ranking", "spiffe://evorec.test/ranking"}
    assert caller_identities({}) == set()


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """The settings with exactly `env` as the tls section's environment."""
    monkeypatch.delenv("EVOREC_CONFIG_FILE", raising=False)
    for name in TlsSettings.model_fields:
        monkeypatch.delenv(f"EVOREC_TLS__{name.upper()}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(f"EVOREC_TLS__{name.upper()}", value)
    return load_settings()


def test_tls_settings_load_from_the_environment(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    loaded = _load(
        monkeypatch,
        cert_file=str(pki.server.cert),
        key_file=str(pki.server.key),
        ca_file=str(pki.ca),
        require_client_cert="true",
        authorization='{"evorec.v1.InterestService/DeleteUser": ["admin"]}',
    )

    assert loaded.tls.require_client_cert
    assert loaded.tls.authorization == {f"{INTEREST}/DeleteUser": ["admin"]}


def test_the_policy_loads_from_a_config_file(
    monkeypatch: pytest.MonkeyPatch, pki: Pki, tmp_path: Path
) -> None:
    config = tmp_path / "evorec.toml"
    config.write_text(
        f"""
[tls]
cert_file = "{pki.server.cert}"
key_file = "{pki.server.key}"
ca_file = "{pki.ca}"
require_client_cert = true

[tls.authorization]
"evorec.v1.InterestService/GetRecentItems" = ["ranking"]
"evorec.v1.InterestService/DeleteUser" = ["admin", "spiffe://evorec.test/ops"]
"evorec.v1.RankingService/Recommend" = ["*"]
""",
        encoding="utf-8",
    )
    _load(monkeypatch)

    loaded = load_settings(config)

    assert loaded.tls.authorization == {
        f"{INTEREST}/GetRecentItems": ["ranking"],
        f"{INTEREST}/DeleteUser": ["admin", "spiffe://evorec.test/ops"],
        "evorec.v1.RankingService/Recommend": ["*"],
    }


def test_without_tls_settings_servers_and_clients_are_plaintext(settings: Settings) -> None:
    assert settings.tls == TlsSettings()
    assert not settings.tls.server_enabled
    assert not settings.tls.client_enabled
    assert channel_credentials(settings.tls) is None


# Valid: mutual TLS with a policy. Each case below changes some of it (None: unset); CERT,
# KEY and CA stand for the test's files.
VALID_ENV = {
    "cert_file": "CERT",
    "key_file": "KEY",
    "ca_file": "CA",
    "require_client_cert": "true",
    "authorization": '{"evorec.v1.InterestService/DeleteUser": ["admin"]}',
}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"authorization": '{"evorec.v1.InterestService/DeleteUsers": ["admin"]}'},
            "invalid setting EVOREC_TLS__AUTHORIZATION: Value error, "
            "'evorec.v1.InterestService/DeleteUsers' is neither an RPC",
        ),
        ({"authorization": '{"evorec.v1.NoSuchService": ["admin"]}'}, "NoSuchService"),
        ({"authorization": '{"evorec.v1.RankingService": []}'}, "at least one identity"),
        ({"authorization": '{"evorec.v1.RankingService": [""]}'}, "at least one identity"),
        ({"require_client_cert": "false"}, "policy needs require_client_cert = true"),
        ({"key_file": None}, "set both or neither"),
        ({"ca_file": None}, "require_client_cert needs cert_file, key_file and ca_file"),
        (
            {"cert_file": "/no/such/file.crt"},
            "EVOREC_TLS__CERT_FILE: Path does not point to a file",
        ),
    ],
)
def test_bad_tls_settings_stop_the_start_with_a_message_naming_them(
    monkeypatch: pytest.MonkeyPatch, pki: Pki, changes: dict[str, str | None], message: str
) -> None:
    files = {"CERT": str(pki.server.cert), "KEY": str(pki.server.key), "CA": str(pki.ca)}
    env = {
        name: files.get(value, value)
        for name, value in {**VALID_ENV, **changes}.items()
        if value is not None
    }
    valid = {name: files.get(value, value) for name, value in VALID_ENV.items()}
    assert _load(monkeypatch, **valid).tls.authorization

    with pytest.raises(ConfigError) as raised:
        _load(monkeypatch, **env)

    assert message in str(raised.value)


def test_the_readme_example_policy_is_valid_and_lets_the_services_call_each_other() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    security = readme.split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    example = tomllib.loads(security.split("```toml\n", 1)[1].split("```", 1)[0])

    policy = Policy(validate_rules(example["tls"]["authorization"]))

    for caller, method in [
        ("embedding", "evorec.v1.PreprocessService/NormalizeText"),
        ("interest", "evorec.v1.EmbeddingService/GetItemVectors"),
        ("interest", "evorec.v1.EmbeddingService/ListTopics"),
        ("ranking", "evorec.v1.EmbeddingService/ListItems"),
        ("ranking", "evorec.v1.InterestService/GetRecentItems"),
        ("admin", "evorec.v1.InterestService/DeleteUser"),
        ("anyone", "evorec.v1.RankingService/Recommend"),
    ]:
        policy.check(method, {caller})
    for caller, method in [
        ("admin", "evorec.v1.InterestService/GetRecentItems"),
        ("ranking", "evorec.v1.InterestService/DeleteUser"),
    ]:
        with pytest.raises(PermissionDenied):
            policy.check(method, {caller})
