"""The wrapped handlers the server interceptors keep per method (evorec.platform.handlers)."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import grpc

from evorec.platform.authorization import AuthorizationInterceptor, Policy
from evorec.platform.handlers import Behavior, Handler, KeptHandlers, rewrapped
from evorec.platform.interceptors import ServerInterceptor
from evorec.platform.metrics import RpcMetrics

Details = namedtuple("Details", "method invocation_metadata")


async def answer(request: Any, context: Any) -> str:
    return f"answer to {request}"


def parse(data: bytes) -> str:
    return data.decode()


def test_rewrapped_replaces_the_behaviour_of_the_handlers_kind_and_keeps_the_rest() -> None:
    handler = grpc.unary_stream_rpc_method_handler(
        answer, request_deserializer=parse, response_serializer=str.encode
    )
    seen: list[tuple[str, Behavior]] = []

    def wrap(kind: str, behavior: Behavior) -> Behavior:
        seen.append((kind, behavior))
        return print

    kept_deserializer = rewrapped(handler, wrap)
    new_deserializer = rewrapped(handler, wrap, request_deserializer=bytes.hex)

    assert seen == [("unary_stream", answer), ("unary_stream", answer)]
    assert kept_deserializer.unary_stream is print
    assert kept_deserializer.unary_unary is None
    assert kept_deserializer.request_deserializer is parse
    assert kept_deserializer.response_serializer is str.encode
    assert new_deserializer.request_deserializer is bytes.hex


def test_a_methods_wrapped_handler_is_built_once_for_each_handler_beneath_it() -> None:
    built: list[tuple[Handler, str]] = []

    def build(handler: Handler, method: str) -> Handler:
        built.append((handler, method))
        return rewrapped(handler, lambda _, behavior: behavior)

    kept = KeptHandlers(build)
    first = grpc.unary_unary_rpc_method_handler(answer)
    other = grpc.unary_unary_rpc_method_handler(answer)

    once = kept.get(first, "/s/A")
    assert kept.get(first, "/s/A") is once
    assert kept.get(first, "/s/A") is once
    assert len(built) == 1
    anew = kept.get(other, "/s/A")  # another handler beneath (one built per call, say)
    assert anew is not once
    assert kept.get(first, "/s/B") is not once
    assert built == [(first, "/s/A"), (other, "/s/A"), (first, "/s/B")]


async def test_the_servers_chained_interceptors_give_each_method_one_handler_for_every_call() -> (
    None
):
    registered = grpc.unary_unary_rpc_method_handler(answer)

    async def continuation(details: Any) -> Handler:
        return registered

    authorization = AuthorizationInterceptor(Policy({"*": ["admin"]}))

    async def through_authorization(details: Any) -> Handler:
        return await authorization.intercept_service(continuation, details)

    outer = ServerInterceptor(RpcMetrics.create())
    details = Details("/evorec.v1.RankingService/Recommend", ())

    first = await outer.intercept_service(through_authorization, details)
    second = await outer.intercept_service(through_authorization, details)

    assert second is first
    assert first.unary_unary is not answer  # wrapped: metrics, and the policy's check
