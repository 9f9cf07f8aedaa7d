"""A gRPC proxy that makes the first call of one method fail with UNAVAILABLE, so that a
client's retry policy has something to retry; every other call is forwarded byte for byte."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import grpc

from evorec.platform.context import REQUEST_ID_KEY

Metadata = Sequence[tuple[str, str | bytes]]


@dataclass
class FlakyProxy:
    """Counts the calls it gets per method; `address` is where it listens."""

    address: str = ""
    calls: Counter[str] = field(default_factory=Counter)


class _Forwarder(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic in stubs only
    def __init__(self, upstream: grpc.aio.Channel, fail_first: str, proxy: FlakyProxy) -> None:
        self.upstream = upstream
        self.fail_first = fail_first
        self.proxy = proxy

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method

        async def forward(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            self.proxy.calls[method] += 1
            if method == self.fail_first and self.proxy.calls[method] == 1:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "dropped by the flaky proxy")
            metadata = [
                (k, v) for k, v in context.invocation_metadata() or () if k == REQUEST_ID_KEY
            ]
            try:
                call = self.upstream.unary_unary(
                    method, request_serializer=None, response_deserializer=None
                )
                return await call(request, timeout=context.time_remaining(), metadata=metadata)
            except grpc.aio.AioRpcError as error:
                # The error details (grpc-status-details-bin) travel in the trailers.
                trailers = tuple(cast(Metadata, error.trailing_metadata() or ()))
                await context.abort(error.code(), error.details() or "", trailers)

        return grpc.unary_unary_rpc_method_handler(forward)


@asynccontextmanager
async def flaky_proxy(target: str, fail_first: str) -> AsyncIterator[FlakyProxy]:
    """A proxy in front of `target` whose first call of `fail_first` ("/pkg.Service/Method")
    fails with UNAVAILABLE."""
    proxy = FlakyProxy()
    async with grpc.aio.insecure_channel(target) as upstream:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([_Forwarder(upstream, fail_first, proxy)])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        proxy.address = f"127.0.0.1:{port}"
        try:
            yield proxy
        finally:
            await server.stop(grace=None)
