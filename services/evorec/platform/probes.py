"""Asking whether a service is up: the health checks that `evorec up`, `evorec health`, the
benchmarks and the tests share."""

from __future__ import annotations

import socket
import subprocess
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _channel(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, credentials)


def check_health(
    target: str,
    service: str = "",
    timeout: float = 2.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> str:
    """SERVING, NOT_SERVING, or why the check failed (e.g. UNAVAILABLE); over TLS with
    `credentials` (evorec.platform.tls.channel_credentials), else plaintext."""
    with _channel(target, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def wait_until_serving(
    target: str,
    service: str = "",
    timeout: float = 120.0,
    process: subprocess.Popen[bytes] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Returns once `target` reports SERVING; raises RuntimeError when `process` (the
    service's, if given) exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while check_health(target, service, 1.0, credentials) != "SERVING":
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{service or target} exited with status {process.returncode} at start"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service or target} did not become SERVING within {timeout:.0f} s")
        time.sleep(0.1)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now on `host` (for tests and benchmarks that start servers)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
