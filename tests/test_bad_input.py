"""Hostile input against the four real services (in-process, on loopback ports): a sample of
the catalogue of tests/bad_input.py in the default run, the whole of it as a slow test
(scripts/bad_input.py sends it to `evorec serve` processes and checks the stored data)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from evorec.platform.errors import field_violations
from evorec.v1 import (
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    interest_pb2,
    interest_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
)
from tests.bad_input import (
    FORGED_TOKENS,
    INVALID_UTF8,
    MARKER,
    Case,
    Outcome,
    catalogue,
    cut_seeds,
    failures,
    rpcs,
    sample,
    seeds,
    send_all,
    tally,
)
from tests.conftest import Stack

NAMES = ("preprocess", "embedding", "interest", "ranking")


@pytest.fixture
async def four(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, prepared: Path, model_base: Path
) -> Stack:
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    monkeypatch.setenv("EVOREC_SERVING__BASE_PATH", str(model_base))
    for name in NAMES:
        await stack.start(name)
    return stack


def known_items(prepared: Path) -> list[str]:
    return sorted(pd.read_parquet(prepared / "items.parquet")["item_id"].astype(str))


async def send_cases(stack: Stack, cases: list[Case]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for name in NAMES:
        service = f"evorec.v1.{name.capitalize()}Service"
        mine = [case for case in cases if case.rpc.service == service]
        target = f"127.0.0.1:{stack.running[name].port}"
        outcomes.extend(await send_all(target, mine, call_timeout=30))
    return outcomes


async def assert_held(stack: Stack, outcomes: list[Outcome]) -> None:
    """No UNKNOWN or INTERNAL answer, and every service still SERVING."""
    bad = [
        f"{o.code.name} {o.case.rpc.name} {o.case.label}: {o.details}" for o in failures(outcomes)
    ]
    assert not bad, "\n".join(bad)
    for name in NAMES:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.running[name].port}") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING, name


async def test_a_sample_of_the_catalogue_gets_no_unknown_or_internal(
    four: Stack, prepared: Path
) -> None:
    items = known_items(prepared)
    now = time.time()
    cases = catalogue(seeds(items, now), cut_seeds(items, now))
    small = [c for c in cases if sum(map(len, c.messages)) < 1_000_000]
    picked = sample(small, per_kind=2)
    assert {case.rpc.path for case in picked} == {rpc.path for rpc in rpcs()}
    outcomes = await send_cases(four, picked)
    await assert_held(four, outcomes)
    counts = tally(outcomes)
    assert set(counts) == {rpc.name for rpc in rpcs()}


async def test_undecodable_bytes_are_invalid_argument_naming_the_message(four: Stack) -> None:
    rpc = next(r for r in rpcs() if r.name == "IngestEvents")
    request = interest_pb2.IngestEventsRequest(
        events=[common_pb2.Event(event_id="e", user_id="u", item_id="i", text=MARKER)]
    )
    raw = request.SerializeToString().replace(MARKER.encode(), INVALID_UTF8)
    cases = [
        Case(rpc, "unicode", "invalid UTF-8", (raw,)),
        Case(rpc, "malformed", "cut", (b"\x0a\x09",)),
    ]
    for outcome in await send_cases(four, cases):
        assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "the request is not a valid evorec.v1.IngestEventsRequest" in outcome.details


async def test_a_stream_that_turns_bad_keeps_what_came_before_and_names_the_message(
    four: Stack, prepared: Path
) -> None:
    items = known_items(prepared)
    good = cut_seeds(items, time.time())["StreamEvents"].SerializeToString()
    rpc = next(r for r in rpcs() if r.name == "StreamEvents")
    case = Case(rpc, "stream-cut", "good, good, malformed", (good, good, b"\x0b", good))
    [outcome] = await send_cases(four, [case])
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "message 2 of the stream" in outcome.details
    async with grpc.aio.insecure_channel(f"127.0.0.1:{four.running['interest'].port}") as channel:
        stub = interest_pb2_grpc.InterestServiceStub(channel)
        history = await stub.GetUserHistory(
            interest_pb2.GetUserHistoryRequest(user_id="bad-input-cut", page_size=100)
        )
    assert len(history.events) == len(interest_pb2.StreamEventsRequest.FromString(good).events)


@pytest.mark.parametrize("field", ["seconds", "nanos"])
async def test_a_forecast_history_time_out_of_range_is_invalid_argument(
    four: Stack, prepared: Path, field: str
) -> None:
    items = known_items(prepared)
    history = ranking_pb2.InlineHistory(
        items=[ranking_pb2.HistoryItem(item_id=item) for item in items[:2]]
    )
    for entry in history.items:
        entry.event_time.seconds = 1_700_000_000
    setattr(history.items[1].event_time, field, 2**63 - 1 if field == "seconds" else -1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{four.running['ranking'].port}") as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ForecastInterests(
                ranking_pb2.ForecastInterestsRequest(history=history, horizon=3)
            )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "history.items[1].event_time" in (raised.value.details() or "")


@pytest.mark.slow
async def test_the_whole_catalogue_gets_no_unknown_or_internal(four: Stack, prepared: Path) -> None:
    items = known_items(prepared)
    now = time.time()
    outcomes = await send_cases(four, catalogue(seeds(items, now), cut_seeds(items, now)))
    await assert_held(four, outcomes)


async def test_forged_page_tokens_are_invalid_argument_on_page_token(four: Stack) -> None:
    ports = {name: four.running[name].port for name in ("embedding", "interest")}
    for label, token in FORGED_TOKENS.items():
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['embedding']}") as channel:
            topics = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await topics.ListTopics(embedding_pb2.ListTopicsRequest(page_token=token))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, label
        assert [v.field for v in field_violations(raised.value)] == ["page_token"], label
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['interest']}") as channel:
            interest = interest_pb2_grpc.InterestServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await interest.GetUserHistory(
                    interest_pb2.GetUserHistoryRequest(user_id="u1", page_token=token)
                )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, label
        assert [v.field for v in field_violations(raised.value)] == ["page_token"], label
