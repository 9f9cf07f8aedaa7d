"""The one way every evorec service is built and run.

A service hands the runtime a `GrpcService`: its proto service name, how to add its servicer
to a server, and how to load and release what it needs. The runtime adds the rest, the same
for all: health per service name (NOT_SERVING until `start` has loaded everything, SERVING
after, NOT_SERVING again while draining), server reflection, Prometheus metrics over HTTP,
the interceptor (request ids, deadlines, errors, metrics), explicit keepalive and message
limits, and a graceful shutdown on SIGTERM that lets in-flight calls finish. With the `tls`
settings it listens with TLS or mutual TLS and checks each call against the authorization
policy; a plaintext health-only port can serve probes beside it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client.registry import Collector

from evorec.platform.admission import Admission
from evorec.platform.authorization import AuthorizationInterceptor, Policy
from evorec.platform.config import Endpoint, ServerSettings
from evorec.platform.heap import freeze_long_lived
from evorec.platform.interceptors import ServerInterceptor
from evorec.platform.metrics import RpcMetrics
from evorec.platform.tls import TlsSettings, is_loopback, server_credentials

log = logging.getLogger("evorec.server")
# grpc-stubs describes grpc_health without its asyncio servicer.
AsyncHealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]


async def _nothing() -> None:
    return None


@dataclass
class GrpcService:
    """What a microservice gives the runtime.

    Attributes:
      name: the full proto service name, e.g. `evorec.v1.RankingService`; health and
        reflection answer for it.
      register: adds the service's servicer(s) to a server.
      start: loads what the service needs (models, tables, files); health turns SERVING
        only once it returns.
      stop: releases what `start` acquired, after in-flight calls have drained.
      collectors: the service's own Prometheus metrics, served beside the RPC metrics.
    """

    name: str
    register: Callable[[grpc.aio.Server], None]
    start: Callable[[], Awaitable[None]] = _nothing
    stop: Callable[[], Awaitable[None]] = _nothing
    collectors: tuple[Collector, ...] = ()


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """gRPC channel arguments that make every limit explicit."""
    return [
        ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
        ("grpc.max_send_message_length", settings.max_send_message_bytes),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            int(settings.min_client_ping_interval_s * 1000),
        ),
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(settings.grace_period_s * 1000)),
        ("grpc.server.max_pending_requests", settings.max_pending_soft),
        ("grpc.server.max_pending_requests_hard_limit", settings.max_pending),
    ]


@dataclass
class RunningServer:
    """A started service: its bound ports, and the means to stop it gracefully."""

    service: GrpcService
    server: grpc.aio.Server
    health: Any
    metrics_http: WSGIServer
    port: int
    grace_period_s: float
    loading: asyncio.Task[None] | None = None
    # The plaintext health-only server and its port, when the endpoint has a health_port.
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    # Whether to freeze what loading built before answering SERVING (see platform.heap):
    # for a process that serves one service, not for a test runner that starts many.
    freeze_after_load: bool = False

    @property
    def metrics_port(self) -> int:
        return self.metrics_http.server_port

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in (self.service.name, ""):
            await self.health.set(name, status)

    async def load(self) -> None:
        await self.service.start()
        if self.freeze_after_load:
            freeze_long_lived()
        await self.set_serving(True)
        log.info("%s serving", self.service.name)

    async def ready(self) -> None:
        """Waits until the service has loaded and serves; raises what loading raised."""
        if self.loading is not None:
            await self.loading

    async def shutdown(self) -> None:
        """Stops taking calls, lets in-flight ones finish within the grace period, cleans up."""
        log.info("draining %s (grace %.1f s)", self.service.name, self.grace_period_s)
        if self.loading is not None:
            if not self.loading.done():
                self.loading.cancel()
            elif not self.loading.cancelled() and self.loading.exception() is not None:
                log.error("%s failed to load", self.service.name, exc_info=self.loading.exception())
        await self.health.enter_graceful_shutdown()
        # The metrics server notices its shutdown within half a second: let it, meanwhile.
        metrics_stopped = asyncio.create_task(asyncio.to_thread(self.metrics_http.shutdown))
        await self.server.stop(self.grace_period_s)
        if self.health_server is not None:
            await self.health_server.stop(None)
        await self.service.stop()
        await metrics_stopped
        self.metrics_http.server_close()
        log.info("stopped %s", self.service.name)


def _listen(server: grpc.aio.Server, address: str, tls: TlsSettings) -> int:
    """Adds the service's port, with TLS when configured; returns the bound port."""
    try:
        if tls.server_enabled:
            return server.add_secure_port(address, server_credentials(tls))
        return server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from exc


def _health_server(
    health_servicer: Any, host: str, port: int, settings: ServerSettings, metrics: RpcMetrics
) -> tuple[grpc.aio.Server, int]:
    """A plaintext server of grpc.health.v1's Check alone, sharing the service's health
    statuses: Kubernetes' native gRPC probes cannot speak TLS, and a port that answers
    nothing but Check gives a caller without a certificate nothing else to call. Not Watch:
    a stream stays open, and 100 idle ones took every call this port allows, failing the
    probes. The service's interceptor (no admission) answers malformed bytes
    INVALID_ARGUMENT, not UNKNOWN, and counts the probes."""
    # Probes come a few a second at most; the bound keeps a flood on this unauthenticated
    # port from taking more than a sliver of the service.
    server = grpc.aio.server(
        interceptors=[ServerInterceptor(metrics)],
        options=server_options(settings),
        maximum_concurrent_rpcs=100,
    )
    check = grpc.unary_unary_rpc_method_handler(
        health_servicer.Check,
        request_deserializer=health_pb2.HealthCheckRequest.FromString,
        response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(health.SERVICE_NAME, {"Check": check}),)
    )
    return server, _listen(server, f"{host}:{port}", TlsSettings())


async def start_server(
    service: GrpcService,
    endpoint: Endpoint,
    settings: ServerSettings,
    tls: TlsSettings | None = None,
    freeze_after_load: bool = False,
) -> RunningServer:
    """Starts `service` on `endpoint`: listening at once, loading in the background.

    Health answers NOT_SERVING while the service loads, so that an orchestrator routes around
    it, and SERVING once `service.start` returns; `await running.ready()` waits for that.
    `tls` (default: none, plaintext) secures the port and holds the authorization policy.
    `freeze_after_load` keeps what loading built out of the collector's full passes
    (`platform.heap`), for a process that serves this one service.
    """
    tls = tls or TlsSettings()
    metrics = RpcMetrics.create()
    for collector in service.collectors:
        metrics.registry.register(collector)
    admission = Admission(
        settings.max_in_progress,
        settings.max_waiting,
        settings.queue_target_s,
        settings.queue_interval_s,
        settings.standing_in_progress,
    )
    interceptors: list[grpc.aio.ServerInterceptor] = [ServerInterceptor(metrics, admission)]  # type: ignore[type-arg]
    if tls.authorization:
        # After the ServerInterceptor, which logs, counts and answers its denials.
        interceptors.append(AuthorizationInterceptor(Policy(tls.authorization)))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    health_servicer = AsyncHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service.register(server)
    reflection.enable_server_reflection(
        (service.name, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = _listen(server, endpoint.target, tls)
    health_server, health_port = (
        _health_server(health_servicer, endpoint.host, endpoint.health_port, settings, metrics)
        if endpoint.health_port is not None
        else (None, None)
    )
    if not tls.server_enabled and not is_loopback(endpoint.host):
        log.warning(
            "%s listens on %s without TLS: anyone who reaches the port can call every RPC; "
            "set EVOREC_TLS__CERT_FILE and EVOREC_TLS__KEY_FILE (see README, Security)",
            service.name,
            endpoint.host,
        )
    running = RunningServer(
        service=service,
        server=server,
        health=health_servicer,
        metrics_http=metrics.serve(endpoint.host, endpoint.metrics_port),
        port=port,
        grace_period_s=settings.grace_period_s,
        health_server=health_server,
        health_port=health_port,
        freeze_after_load=freeze_after_load,
    )
    await running.set_serving(False)
    await server.start()
    if health_server is not None:
        await health_server.start()
    log.info(
        "%s listening on %s:%d (%s), metrics on :%d%s",
        service.name,
        endpoint.host,
        port,
        tls.describe(),
        running.metrics_port,
        "" if health_port is None else f", plaintext health on :{health_port}",
    )
    running.loading = asyncio.create_task(running.load())
    return running


async def serve(
    service: GrpcService,
    endpoint: Endpoint,
    settings: ServerSettings,
    tls: TlsSettings | None = None,
) -> None:
    """Runs `service` until SIGTERM or SIGINT, then drains it gracefully."""
    running = await start_server(service, endpoint, settings, tls, freeze_after_load=True)
    try:
        await running.ready()
    except BaseException:
        await running.shutdown()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await running.shutdown()
