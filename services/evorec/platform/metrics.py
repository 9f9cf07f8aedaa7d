"""Prometheus metrics of a gRPC server, named as go-grpc-prometheus names them, so that the
dashboards and alerts written for that convention work unchanged.

Each server gets its own registry: several services can run in one process (tests) without
their counters mixing, and each serves only its own on its metrics port.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

# From 0.5 ms to 10 s: the range between an in-memory lookup and a slow model call.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_LABELS = ("grpc_type", "grpc_service", "grpc_method")
# How often the metrics thread looks whether it should stop. A server's shutdown waits up to
# this long for it: with socketserver's default (0.5 s, what prometheus_client's
# start_http_server runs) every stop of a service took half a second.
STOP_POLL_S = 0.02


@dataclass
class RpcMetrics:
    """Counters and histograms of the calls one server handles."""

    registry: CollectorRegistry
    started: Counter
    handled: Counter
    handling_seconds: Histogram
    in_flight: Gauge
    shed: Counter

    @classmethod
    def create(cls) -> RpcMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            started=Counter(
                "grpc_server_started", "RPCs started on the server.", _LABELS, registry=registry
            ),
            handled=Counter(
                "grpc_server_handled",
                "RPCs completed on the server, by status code.",
                (*_LABELS, "grpc_code"),
                registry=registry,
            ),
            handling_seconds=Histogram(
                "grpc_server_handling_seconds",
                "Time from the start of an RPC to its status, in seconds.",
                _LABELS,
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            in_flight=Gauge(
                "grpc_server_in_flight", "RPCs being handled now.", _LABELS, registry=registry
            ),
            shed=Counter(
                "evorec_admission_shed",
                "Calls refused by admission (RESOURCE_EXHAUSTED), by reason: queue, deadline,"
                " delay.",
                (*_LABELS, "reason"),
                registry=registry,
            ),
        )

    def serve(self, host: str, port: int) -> WSGIServer:
        """Serves /metrics over HTTP on a background thread; returns the server (its port;
        `shutdown()` stops it within STOP_POLL_S)."""

        class Server(ThreadingWSGIServer):
            address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

        app = make_wsgi_app(self.registry)
        server = make_server(host, port, app, Server, handler_class=_UnloggedRequests)
        threading.Thread(
            target=server.serve_forever, args=(STOP_POLL_S,), name="metrics", daemon=True
        ).start()
        return server


class _UnloggedRequests(WSGIRequestHandler):
    """A probe scrapes every few seconds: a line on stderr for each would be noise."""

    def log_message(self, format: str, *args: Any) -> None:
        pass
