"""Wrapping a gRPC method handler's behaviour: what evorec's server interceptors share.

gRPC's Python server asks its interceptors for a handler at every call. Building the wrapped
handler anew each time (closures, the metrics' label lookups) is work repeated on every call
of the server's busiest path, so an interceptor keeps the one it built for a method and gives
it again as long as the handler beneath is the same object (a service's registered handler
is; a handler another interceptor builds per call is not, and is wrapped anew).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import grpc

Behavior = Callable[..., Any]
Deserializer = Callable[[bytes], Any]
# Generic in the type stubs only, so named as a string.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
# The fields of a method handler that hold its behaviour, by the shape of its call.
KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def rewrapped(
    handler: Handler,
    wrap: Callable[[str, Behavior], Behavior],
    request_deserializer: Deserializer | None = None,
) -> Handler:
    """`handler` with its behaviour replaced by `wrap(kind, behaviour)` (and its request
    deserializer by `request_deserializer`, where one is given)."""
    for kind in KINDS:
        behavior = getattr(handler, kind)
        if behavior is not None:
            factory = getattr(grpc, f"{kind}_rpc_method_handler")
            wrapped: Handler = factory(
                wrap(kind, behavior),
                request_deserializer=request_deserializer or handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            return wrapped
    return handler


class KeptHandlers:
    """The wrapped handler of each method, built by `build(handler, method)` once for each
    handler beneath it; see the module docstring."""

    def __init__(self, build: Callable[[Handler, str], Handler]) -> None:
        self._build = build
        self._kept: dict[str, tuple[Handler, Handler]] = {}

    def get(self, handler: Handler, method: str) -> Handler:
        """The wrapped handler of `method` over `handler`: the kept one when it was built over
        this very handler, else a new one, kept from then on."""
        kept = self._kept.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        wrapped = self._build(handler, method)
        self._kept[method] = (handler, wrapped)
        return wrapped
