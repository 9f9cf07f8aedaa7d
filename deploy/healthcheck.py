"""The images' HEALTHCHECK: asks the gRPC health service of the evorec service that this
container runs (the `serve NAME` on PID 1's command line), on the port its settings give,
for its full name. Exit status 0 only when it answers SERVING; otherwise one line says why.

A ranking service whose encoder is TensorFlow Serving also needs TF Serving reachable: it
would answer without the encoder (degraded) rather than fail, so the check says so here.
With a health port set, the check asks there (plaintext, as probes do); otherwise on the
service's port, over TLS when the service serves TLS.
"""

import sys
from itertools import pairwise
from pathlib import Path

import grpc

from evorec.platform.config import ConfigError, load_settings
from evorec.platform.probes import check_health
from evorec.platform.registry import SERVICES
from evorec.platform.tls import channel_credentials

TIMEOUT_S = 3.0


def served_name() -> str | None:
    """NAME of `evorec serve NAME` on PID 1's command line (tini's child), if there."""
    argv = Path("/proc/1/cmdline").read_bytes().decode().split("\0")
    for first, second in pairwise(argv):
        if first == "serve":
            return second
    return None


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else served_name()
    if name is None:
        print("no `evorec serve NAME` runs in this container: nothing to check")
        return 0
    if name not in SERVICES:
        print(f"unhealthy: unknown service {name!r}")
        return 1
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"unhealthy: {error}")
        return 1
    endpoint = settings.endpoint(name)
    if endpoint.health_port is not None:  # plaintext, Check only: what probes are for
        port, credentials = endpoint.health_port, None
    else:  # the service's own port, in TLS when it serves TLS
        tls = settings.tls
        port, credentials = endpoint.port, channel_credentials(tls) if tls.server_enabled else None
    status = check_health(f"127.0.0.1:{port}", SERVICES[name].full_name, TIMEOUT_S, credentials)
    if status != "SERVING":
        hint = (
            f" (over TLS to 127.0.0.1, which the certificate may not name: set "
            f"EVOREC_{name.upper()}__HEALTH_PORT for probes)"
            if credentials is not None
            else ""
        )
        print(f"unhealthy: {SERVICES[name].full_name} on port {port}: {status}{hint}")
        return 1
    if name == "ranking" and settings.serving.backend == "tf_serving":
        target = settings.serving.tf_serving_target
        tls = channel_credentials(settings.tls) if settings.serving.tf_serving_tls else None
        with grpc.secure_channel(target, tls) if tls else grpc.insecure_channel(target) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
            except grpc.FutureTimeoutError:
                print(f"unhealthy: TensorFlow Serving at {target} is unreachable")
                return 1
    print(f"{SERVICES[name].full_name} on port {port}: SERVING")
    return 0


if __name__ == "__main__":
    sys.exit(main())
