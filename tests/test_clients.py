"""Outbound calls: deadlines derived from the inbound call, request ids, idempotent retries."""

from __future__ import annotations

import asyncio
import json
import random
import re
from typing import Any

import grpc
import pytest

from evorec.platform.clients import call_timeout, idempotent_methods, open_channel, service_config
from evorec.platform.config import ClientSettings, Settings
from evorec.platform.context import new_request_id
from evorec.platform.server import GrpcService
from evorec.v1 import (
    interest_pb2,
    interest_pb2_grpc,
    preprocess_pb2,
    preprocess_pb2_grpc,
    ranking_pb2,
)
from tests.support import ScriptedServicer, channel, echo, scripted_service

PREPROCESS = preprocess_pb2.DESCRIPTOR.services_by_name["PreprocessService"]
INTEREST = interest_pb2.DESCRIPTOR.services_by_name["InterestService"]
RANKING = ranking_pb2.DESCRIPTOR.services_by_name["RankingService"]


def test_only_rpcs_the_contract_marks_idempotent_are_retried() -> None:
    assert idempotent_methods(INTEREST) == [
        "IngestEvents",
        "GetUserHistory",
        "GetRecentItems",
        "GetInterestProfile",
        "DeleteUser",
        "ExportEvents",  # server streaming: gRPC retries it only before the first message
    ]
    assert idempotent_methods(RANKING) == ["Recommend", "RecommendBatch", "ForecastInterests"]
    config = json.loads(service_config(INTEREST, ClientSettings(retry_max_attempts=3)))
    (method_config,) = config["methodConfig"]
    assert {"service": "evorec.v1.InterestService", "method": "StreamEvents"} not in method_config[
        "name"
    ]
    assert method_config["retryPolicy"]["maxAttempts"] == 3
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]


def test_one_attempt_means_no_retry_policy_at_all() -> None:
    assert json.loads(service_config(INTEREST, ClientSettings(retry_max_attempts=1))) == {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [],
    }


def test_call_timeout_without_an_inbound_deadline_is_the_given_or_default_one() -> None:
    assert call_timeout(None, 5.0) == 5.0
    assert call_timeout(0.25, 5.0) == 0.25


async def relay_service(downstream_port: int, settings: Settings) -> tuple[GrpcService, list[Any]]:
    """A service whose NormalizeText calls NormalizeText on `downstream_port`, with no timeout
    of its own, through an evorec client channel."""
    client_channel = open_channel(f"127.0.0.1:{downstream_port}", PREPROCESS, settings.client)
    downstream = preprocess_pb2_grpc.PreprocessServiceStub(client_channel)

    async def relay(request: Any, context: Any) -> Any:
        return await downstream.NormalizeText(request)

    return scripted_service(ScriptedServicer(relay)), [client_channel]


async def test_the_inbound_deadline_and_request_id_cross_a_hop(
    started: Any, settings: Settings
) -> None:
    seen: dict[str, Any] = {}

    async def record(request: Any, context: Any) -> Any:
        seen["remaining"] = context.time_remaining()
        seen["metadata"] = dict(context.invocation_metadata())
        return await echo(request, context)

    downstream = await started(scripted_service(ScriptedServicer(record)))
    relay, channels = await relay_service(downstream.port, settings)
    upstream = await started(relay)
    try:
        async with channel(upstream.port) as ch:
            stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
            await stub.NormalizeText(
                preprocess_pb2.NormalizeTextRequest(texts=["a"]),
                timeout=1.0,
                metadata=(("x-request-id", "trace-7"),),
            )
            assert 0 < seen["remaining"] < 1.05
            assert seen["metadata"]["x-request-id"] == "trace-7"

            await stub.NormalizeText(preprocess_pb2.NormalizeTextRequest(texts=["a"]))
            # No inbound deadline: the client's default (5 s) applies downstream.
            assert 4.0 < seen["remaining"] < settings.client.default_timeout_s + 0.1
            assert len(seen["metadata"]["x-request-id"]) == 32
    finally:
        for ch in channels:
            await ch.close()


def test_a_new_request_id_is_32_hex_digits_and_new_each_time() -> None:
    ids = [new_request_id() for _ in range(10_000)]

    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch("[0-9a-f]{32}", one) for one in ids)


def test_request_ids_do_not_repeat_when_the_shared_random_generator_is_seeded() -> None:
    state = random.getstate()
    try:
        random.seed(0)  # as a training run in the same process does (Keras' set_random_seed)
        first = new_request_id()
        random.seed(0)
        again = new_request_id()
    finally:
        random.setstate(state)

    assert again != first


async def test_an_idempotent_call_is_retried_on_unavailable(
    started: Any, settings: Settings
) -> None:
    attempts = []

    async def flaky(request: Any, context: Any) -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return await echo(request, context)

    server = await started(scripted_service(ScriptedServicer(flaky)))
    async with open_channel(f"127.0.0.1:{server.port}", PREPROCESS, settings.client) as ch:
        response = await preprocess_pb2_grpc.PreprocessServiceStub(ch).NormalizeText(
            preprocess_pb2.NormalizeTextRequest(texts=["x y"])
        )
    assert [list(r.tokens) for r in response.results] == [["x", "y"]]
    assert len(attempts) == 3


class FlakyStream(interest_pb2_grpc.InterestServiceServicer):
    def __init__(self) -> None:
        self.attempts = 0

    async def StreamEvents(self, request_iterator: Any, context: Any) -> Any:
        self.attempts += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "try later")


async def test_a_non_idempotent_stream_is_not_retried(started: Any, settings: Settings) -> None:
    servicer = FlakyStream()
    service = GrpcService(
        name=INTEREST.full_name,
        register=lambda server: interest_pb2_grpc.add_InterestServiceServicer_to_server(
            servicer, server
        ),
    )
    server = await started(service)
    async with open_channel(f"127.0.0.1:{server.port}", INTEREST, settings.client) as ch:
        stub = interest_pb2_grpc.InterestServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.StreamEvents(iter([interest_pb2.StreamEventsRequest()]))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts == 1


async def test_calls_are_balanced_over_every_address_of_the_target(started: Any) -> None:
    first, second = ScriptedServicer(), ScriptedServicer()
    servers = [await started(scripted_service(servicer)) for servicer in (first, second)]
    target = "ipv4:" + ",".join(f"127.0.0.1:{server.port}" for server in servers)
    client = open_channel(target, PREPROCESS, ClientSettings())
    stub = preprocess_pb2_grpc.PreprocessServiceStub(client)

    async def call() -> None:
        await stub.NormalizeText(preprocess_pb2.NormalizeTextRequest(texts=["x"]))

    try:
        # Round robin picks among the connections that are up; wait until both are.
        for _ in range(500):
            await call()
            if first.calls and second.calls:
                break
            await asyncio.sleep(0.01)
        before = len(first.calls), len(second.calls)
        for _ in range(10):
            await call()
    finally:
        await client.close(None)
    assert (len(first.calls) - before[0], len(second.calls) - before[1]) == (5, 5)
