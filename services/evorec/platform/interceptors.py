"""The server interceptor every evorec service runs behind.

For each call it: takes the request id from the metadata (or makes one) and the deadline
from the call, so that logs and outbound calls carry them; counts and times the call; admits
a unary call of the service's own RPCs only when a slot is free, or sheds it
(`evorec.platform.admission`); turns domain errors into their gRPC status; and turns
anything uncaught into INTERNAL with a log line, never a stack trace for the caller.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import nullcontext
from typing import Any

import grpc
from prometheus_client import Counter

from evorec.platform import context
from evorec.platform.admission import Admission, Shed
from evorec.platform.errors import EvorecError, InvalidArgument
from evorec.platform.handlers import (
    KINDS,
    Behavior,
    Deserializer,
    Handler,
    KeptHandlers,
    rewrapped,
)
from evorec.platform.metrics import RpcMetrics

log = logging.getLogger("evorec.rpc")

# gRPC's name of each handler kind (evorec.platform.handlers.KINDS), as the metrics label it.
_RPC_TYPES = dict(
    zip(KINDS, ("unary", "server_stream", "client_stream", "bidi_stream"), strict=True)
)


class _MethodMetrics:
    """One method's series of the server's metrics, looked up once: a call then only counts
    (prometheus_client's `labels()` takes a lock and checks the labels at every lookup)."""

    def __init__(self, metrics: RpcMetrics, labels: tuple[str, str, str]) -> None:
        self.metrics = metrics
        self.labels = labels
        self.started = metrics.started.labels(*labels)
        self.in_flight = metrics.in_flight.labels(*labels)
        self.handling_seconds = metrics.handling_seconds.labels(*labels)
        self._handled: dict[grpc.StatusCode, Counter] = {}
        self._shed: dict[str, Counter] = {}

    def handled(self, code: grpc.StatusCode) -> Counter:
        """The counter of this method's calls that ended with `code`."""
        counter = self._handled.get(code)
        if counter is None:
            counter = self._handled[code] = self.metrics.handled.labels(*self.labels, code.name)
        return counter

    def shed(self, reason: str) -> Counter:
        """The counter of this method's calls admission refused for `reason` (under
        overload, the busiest path)."""
        counter = self._shed.get(reason)
        if counter is None:
            counter = self._shed[reason] = self.metrics.shed.labels(*self.labels, reason)
        return counter


class _Call:
    """Bookkeeping of one call: context variables in, metrics and access log out."""

    def __init__(
        self,
        metrics: _MethodMetrics,
        servicer_context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        self.metrics = metrics
        self.labels = metrics.labels
        self.servicer_context = servicer_context
        self.code = grpc.StatusCode.OK

    def __enter__(self) -> _Call:
        metadata = dict(self.servicer_context.invocation_metadata() or ())
        self.polling = metadata.get(context.POLL_KEY) == "1"
        raw_id = metadata.get(context.REQUEST_ID_KEY)
        request_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= 128 else None
        self._tokens = (
            context.request_id.set(request_id or context.new_request_id()),
            context.deadline.set(_deadline_of(self.servicer_context)),
        )
        self.start = time.perf_counter()
        self.metrics.started.inc()
        self.metrics.in_flight.inc()
        return self

    async def fail(self, error: BaseException) -> None:
        """Ends the call with the status `error` maps to (always raises)."""
        if isinstance(error, grpc.aio.AbortError):
            aborted_with: grpc.StatusCode | None = self.servicer_context.code()
            self.code = aborted_with or grpc.StatusCode.UNKNOWN
            raise error
        if isinstance(error, EvorecError):
            self.code = error.code
            status = error.to_status()
            await self.servicer_context.abort(status.code, status.details, status.trailing_metadata)
        set_code = self.servicer_context.code()
        if isinstance(error, NotImplementedError) and set_code == grpc.StatusCode.UNIMPLEMENTED:
            # The generated base servicer's answer for an RPC that is not written yet.
            self.code = grpc.StatusCode.UNIMPLEMENTED
            await self.servicer_context.abort(self.code, "method not implemented")
        self.code = grpc.StatusCode.INTERNAL
        log.error("unhandled error in %s", self.labels[2], exc_info=error)
        await self.servicer_context.abort(
            self.code, f"internal error (request id {context.request_id.get()})"
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if self.code == grpc.StatusCode.OK and exc_type in (asyncio.CancelledError, GeneratorExit):
            # gRPC cancelled the handler: the caller's deadline passed, or it went away (a
            # stream's generator is closed instead). Not an answered call.
            remaining = self.servicer_context.time_remaining()
            expired = remaining is not None and remaining <= 0
            self.code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        elapsed = time.perf_counter() - self.start
        self.metrics.in_flight.dec()
        self.metrics.handled(self.code).inc()
        self.metrics.handling_seconds.observe(elapsed)
        # Health probes, reflection (grpc.* services) and the successful calls of pollers
        # would drown the access log.
        quiet = self.labels[1].startswith("grpc.") or (
            self.polling and self.code == grpc.StatusCode.OK
        )
        level = logging.DEBUG if quiet else logging.INFO
        log.log(
            level,
            "rpc %s/%s %s %.1f ms",
            self.labels[1],
            self.labels[2],
            self.code.name,
            elapsed * 1000,
            extra={"grpc_method": self.labels[2], "grpc_code": self.code.name},
        )
        try:
            context.request_id.reset(self._tokens[0])
            context.deadline.reset(self._tokens[1])
        except ValueError:
            pass  # a stream's generator closed from another task: its call's context is gone


def _deadline_of(servicer_context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    remaining = servicer_context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class _Undecodable:
    """Stands in for a request whose bytes did not parse: gRPC would answer UNKNOWN for the
    deserializer's exception; the handler's wrapper answers INVALID_ARGUMENT instead."""

    def __init__(self, type_name: str, error: Exception) -> None:
        self.type_name = type_name
        self.error = error

    def invalid(self, where: str = "the request") -> InvalidArgument:
        return InvalidArgument(f"{where} is not a valid {self.type_name}: {self.error}")


def _tolerant(deserializer: Deserializer | None) -> Deserializer | None:
    """`deserializer`, returning an _Undecodable for bytes it cannot parse (malformed wire
    format, invalid UTF-8 in a string field, nesting past protobuf's limit)."""
    if deserializer is None:
        return None
    message_type = getattr(deserializer, "__self__", None)
    descriptor = getattr(message_type, "DESCRIPTOR", None)
    type_name = getattr(descriptor, "full_name", "request message")

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:  # whatever the caller's bytes make the parser raise
            return _Undecodable(type_name, error)

    return deserialize


def _checked(request: Any) -> Any:
    """The request, unless its bytes did not parse."""
    if isinstance(request, _Undecodable):
        raise request.invalid()
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream's messages; the first that did not parse ends the call, naming it."""
    number = 0
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise request.invalid(f"message {number} of the stream")
        yield request
        number += 1


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic in stubs only
    """Wraps every handler of a server (once per method: `evorec.platform.handlers`); see
    the module docstring."""

    def __init__(self, metrics: RpcMetrics, admission: Admission | None = None) -> None:
        self.metrics = metrics
        self.admission = admission
        self._handlers = KeptHandlers(self._wrap_handler)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if not handler:  # no such method: gRPC itself answers UNIMPLEMENTED
            return handler
        return self._handlers.get(handler, handler_call_details.method)

    def _wrap_handler(self, handler: Handler, name: str) -> Handler:
        service, _, method = name.lstrip("/").partition("/")
        return rewrapped(
            handler,
            lambda kind, behavior: self._wrap(behavior, (_RPC_TYPES[kind], service, method)),
            _tolerant(handler.request_deserializer),
        )

    def _wrap(self, behavior: Behavior, labels: tuple[str, str, str]) -> Behavior:
        metrics = _MethodMetrics(self.metrics, labels)
        client_streaming = labels[0] in ("client_stream", "bidi_stream")
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, servicer_context: Any) -> AsyncIterator[Any]:
                with _Call(metrics, servicer_context) as call:
                    try:
                        requests = (
                            _checked_stream(request) if client_streaming else _checked(request)
                        )
                        async for response in behavior(requests, servicer_context):
                            yield response
                    except Exception as error:
                        await call.fail(error)

            return stream

        admission = self.admission
        if client_streaming or labels[1].startswith("grpc."):
            admission = None  # a stream would hold a slot for its whole life

        async def unary(request: Any, servicer_context: Any) -> Any:
            with _Call(metrics, servicer_context) as call:
                try:
                    async with admission.slot(labels[2]) if admission else nullcontext():
                        checked = (
                            _checked_stream(request) if client_streaming else _checked(request)
                        )
                        result = behavior(checked, servicer_context)
                        # evorec's servicers are async; the generated base class's
                        # placeholders (UNIMPLEMENTED) are plain functions.
                        return await result if inspect.isawaitable(result) else result
                except Exception as error:
                    if isinstance(error, Shed):
                        metrics.shed(error.reason).inc()
                    await call.fail(error)

        return unary
