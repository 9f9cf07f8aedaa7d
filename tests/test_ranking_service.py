"""RankingService end to end: the four real services on loopback ports over the simulated
data and a small exported model; the TF Serving path against a PredictionService over the
same SavedModel."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from evorec.embedding import service as embedding_service
from evorec.encoder.backends import InProcessBackend
from evorec.encoder.publish import apply_version_policy, set_version_label
from evorec.platform.clients import embedding_client, interest_client, ranking_client
from evorec.platform.errors import field_violations
from evorec.platform.registry import create_service
from evorec.platform.server import GrpcService, start_server
from evorec.ranking.catalog import CatalogMirror
from evorec.v1 import (
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    interest_pb2,
    interest_pb2_grpc,
    ranking_pb2,
)
from tests.conftest import Stack, export_small_model
from tests.prediction_service import start_prediction_service
from tests.support import channel
from tests.test_server import scrape

VIEW = common_pb2.EVENT_TYPE_VIEW
ENCODER = ranking_pb2.CANDIDATE_SOURCE_ENCODER
POPULARITY = ranking_pb2.CANDIDATE_SOURCE_POPULARITY


def items_by_topic(prepared: Path) -> dict[str, list[str]]:
    items = pd.read_parquet(prepared / "items.parquet")
    return {str(t): group["item_id"].tolist() for t, group in items.groupby("topic_id")}


def copy_version(source: Path, base: Path, target: int) -> None:
    """Publishes the version folder `source` as version `target` of `base`'s encoder, as
    export writes one: staged under a hidden name, then renamed into place."""
    staging = base / "encoder" / f".{target}.partial"
    shutil.copytree(source, staging)
    manifest = staging / "assets.extra" / "evorec" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": target}))
    staging.rename(base / "encoder" / str(target))


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory: pytest.TempPathFactory, prepared: Path) -> Path:
    """A version of the model trained with another seed: the same data, other weights."""
    base = tmp_path_factory.mktemp("other-weights")
    return export_small_model(prepared, base, version=1, seed=1)


@pytest.fixture
def base(tmp_path: Path, model_base: Path) -> Path:
    """A writable copy of the base path with version 1."""
    shutil.copytree(model_base, tmp_path / "models")
    return tmp_path / "models"


@pytest.fixture
async def services(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, prepared: Path, base: Path
) -> Stack:
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    monkeypatch.setenv("EVOREC_SERVING__BASE_PATH", str(base))
    monkeypatch.setenv("EVOREC_SERVING__POLL_INTERVAL_S", "0.2")
    monkeypatch.setenv("EVOREC_RECOMMEND__CATALOG_POLL_INTERVAL_S", "0.2")
    for name in ("preprocess", "embedding", "interest"):
        await stack.start(name)
    return stack


async def ingest(stack: Stack, user: str, items: list[str], start: float) -> None:
    events = []
    for number, item in enumerate(items):
        when = Timestamp()
        when.FromNanoseconds(int((start + number) * 1e9))
        events.append(
            common_pb2.Event(
                event_id=f"{user}-{start}-{number}",
                user_id=user,
                item_id=item,
                type=VIEW,
                event_time=when,
            )
        )
    async with interest_client(stack.settings()) as interest:
        await interest.stub.IngestEvents(interest_pb2.IngestEventsRequest(events=events))


async def recommend(stack: Stack, **fields: Any) -> ranking_pb2.RecommendResponse:
    async with ranking_client(stack.settings()) as ranking:
        return await ranking.stub.Recommend(ranking_pb2.RecommendRequest(**fields))


def top_topic(response: ranking_pb2.RecommendResponse) -> tuple[str, int]:
    return Counter(r.topic_id for r in response.recommendations).most_common(1)[0]


async def test_recommendations_follow_the_users_latest_events(
    services: Stack, prepared: Path
) -> None:
    await services.start("ranking")
    topics = items_by_topic(prepared)
    first, second = sorted(topics)[0], sorted(topics)[2]
    now = time.time() - 3600
    await ingest(services, "newcomer", topics[first][:15], now)
    before = await recommend(services, user_id="newcomer", k=10, diversity=0.0)
    assert top_topic(before)[0] == first
    assert before.model_version == "1"
    assert not before.cold_start
    assert ENCODER in before.sources_used
    assert not before.degraded_sources
    seen = set(topics[first][:15])
    assert not seen & {r.item_id for r in before.recommendations}
    assert all(r.reason and r.sources for r in before.recommendations)

    await ingest(services, "newcomer", topics[second][:25], now + 100)
    after = await recommend(services, user_id="newcomer", k=10, diversity=0.0)
    topics_before = Counter(r.topic_id for r in before.recommendations)
    topics_after = Counter(r.topic_id for r in after.recommendations)
    assert topics_after[second] > topics_before[second]
    assert topics_after[first] < topics_before[first]


async def test_an_item_upserted_after_training_is_recommended(
    services: Stack, prepared: Path
) -> None:
    await services.start("ranking")
    topics = items_by_topic(prepared)
    topic = sorted(topics)[1]
    words = json.loads((prepared / "text" / "topics.json").read_text())["topics"]
    top_words = next(t["top_words"] for t in words if t["topic_id"] == topic)
    async with embedding_client(services.settings()) as embedding:
        upserted = await embedding.stub.UpsertItems(
            embedding_pb2.UpsertItemsRequest(
                items=[
                    embedding_pb2.Item(
                        item_id="brand-new", title="Brand New", text=" ".join(top_words * 4)
                    )
                ]
            )
        )
    assert upserted.items[0].topic_id == topic
    await ingest(services, "fan", topics[topic][:30], time.time() - 600)
    deadline = time.monotonic() + 10
    while True:
        response = await recommend(services, user_id="fan", k=20)
        found = [r for r in response.recommendations if r.item_id == "brand-new"]
        if found or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert found, [r.item_id for r in response.recommendations]
    assert found[0].topic_id == topic
    assert found[0].title == "Brand New"
    assert found[0].reason.startswith("new in")


async def test_a_user_without_history_gets_a_cold_start_answer(services: Stack) -> None:
    await services.start("ranking")
    response = await recommend(services, user_id="nobody-yet", k=5, diversity=0.0)
    assert response.cold_start
    assert list(response.sources_used) == [POPULARITY]
    assert len(response.recommendations) == 5
    assert response.recommendations[0].reason.startswith("popular")
    scores = [r.score for r in response.recommendations]
    assert scores == sorted(scores, reverse=True)


async def test_inline_histories_filters_and_the_model_window(
    services: Stack, prepared: Path
) -> None:
    await services.start("ranking")
    topics = items_by_topic(prepared)
    names = sorted(topics)
    # Longer than the model's window (50): the newest part is used.
    history = (topics[names[0]] * 10)[:300]
    items = [ranking_pb2.HistoryItem(item_id=i, type=VIEW) for i in history]
    response = await recommend(
        services,
        history=ranking_pb2.InlineHistory(items=items),
        k=15,
        filter=ranking_pb2.RecommendFilter(
            exclude_topic_ids=[names[0]], exclude_item_ids=[topics[names[1]][0]]
        ),
    )
    assert len(response.recommendations) == 15
    assert all(r.topic_id != names[0] for r in response.recommendations)
    assert topics[names[1]][0] not in {r.item_id for r in response.recommendations}
    only = await recommend(
        services,
        history=ranking_pb2.InlineHistory(items=items),
        k=5,
        filter=ranking_pb2.RecommendFilter(include_topic_ids=[names[3]]),
    )
    assert {r.topic_id for r in only.recommendations} == {names[3]}
    again = await recommend(services, history=ranking_pb2.InlineHistory(items=items), k=5)
    assert not {r.item_id for r in again.recommendations} & set(history)
    with_seen = await recommend(
        services,
        history=ranking_pb2.InlineHistory(items=items),
        k=5,
        exclude_seen=False,
        diversity=0.0,
    )
    # The history holds the whole of one topic; allowed back, its items lead (by relevance
    # alone: the diversity re-ranking could place another topic's item among them).
    assert [r.item_id in history for r in with_seen.recommendations] == [True] * 5


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"user_id": "u", "k": 0}, grpc.StatusCode.INVALID_ARGUMENT, "k"),
        ({"user_id": "u", "k": 1001}, grpc.StatusCode.INVALID_ARGUMENT, "k"),
        ({"user_id": "u", "diversity": 1.5}, grpc.StatusCode.INVALID_ARGUMENT, "diversity"),
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "user_id"),
        ({"user_id": "x" * 129}, grpc.StatusCode.INVALID_ARGUMENT, "user_id"),
        (
            {"history": ranking_pb2.InlineHistory(items=[])},
            grpc.StatusCode.INVALID_ARGUMENT,
            "history.items",
        ),
        (
            {"history": ranking_pb2.InlineHistory(items=[ranking_pb2.HistoryItem(item_id="?")])},
            grpc.StatusCode.INVALID_ARGUMENT,
            "history.items[0].item_id",
        ),
        (
            {"user_id": "u", "filter": ranking_pb2.RecommendFilter(exclude_item_ids=["?"])},
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.exclude_item_ids[0]",
        ),
        (
            {"user_id": "u", "filter": ranking_pb2.RecommendFilter(include_topic_ids=["?"])},
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.include_topic_ids[0]",
        ),
        (
            {
                "user_id": "u",
                "filter": ranking_pb2.RecommendFilter(exclude_item_ids=["i1"] * 10_001),
            },
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "filter.exclude_item_ids",
        ),
        *(
            (
                {
                    "history": ranking_pb2.InlineHistory(
                        items=[
                            ranking_pb2.HistoryItem(item_id="i1", event_time={"seconds": 5}),
                            ranking_pb2.HistoryItem(item_id="i2", event_time={"seconds": seconds}),
                        ]
                    )
                },
                grpc.StatusCode.INVALID_ARGUMENT,
                "history.items[1].event_time",
            )
            for seconds in (2**63 - 1, -(2**63))
        ),
    ],
)
async def test_bad_requests_name_the_field(
    services: Stack, fields: dict[str, object], code: grpc.StatusCode, field: str
) -> None:
    await services.start("ranking")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await recommend(services, **fields)
    assert caught.value.code() == code
    assert field in [v.field for v in field_violations(caught.value)]


async def test_thousands_of_unknown_items_are_named_within_the_status_size(
    services: Stack,
) -> None:
    """Each unknown item is a field violation; all of them in the status made it larger
    than gRPC's metadata limits, and the caller got RESOURCE_EXHAUSTED without a field."""
    await services.start("ranking")
    history = ranking_pb2.InlineHistory(
        items=[
            ranking_pb2.HistoryItem(item_id=f"unknown-{n:04d}" + "x" * 100) for n in range(2_000)
        ]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await recommend(services, history=history)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [v.field for v in field_violations(caught.value)]
    assert fields == [f"history.items[{n}].item_id" for n in range(10)]
    assert "2,000 fields in all, the first 10 in the details" in (caught.value.details() or "")


async def test_batches_answer_per_user_and_name_the_bad_request(
    services: Stack, prepared: Path
) -> None:
    await services.start("ranking")
    topics = items_by_topic(prepared)
    names = sorted(topics)
    for number, name in enumerate(names[:3]):
        await ingest(services, f"batch-{number}", topics[name][:10], time.time() - 900)
    requests = [ranking_pb2.RecommendRequest(user_id=f"batch-{n}", k=5) for n in range(3)]
    async with ranking_client(services.settings()) as ranking:
        batch = await ranking.stub.RecommendBatch(
            ranking_pb2.RecommendBatchRequest(requests=requests)
        )
        assert [top_topic(r)[0] for r in batch.responses] == names[:3]
        single = await ranking.stub.Recommend(requests[1])
        assert [r.item_id for r in single.recommendations] == [
            r.item_id for r in batch.responses[1].recommendations
        ]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ranking.stub.RecommendBatch(
                ranking_pb2.RecommendBatchRequest(
                    requests=[requests[0], ranking_pb2.RecommendRequest(user_id="u", k=-1)]
                )
            )
        assert [v.field for v in field_violations(caught.value)] == ["requests[1].k"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ranking.stub.RecommendBatch(
                ranking_pb2.RecommendBatchRequest(requests=[requests[0]] * 257)
            )
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        # Requests at the limits (here k = 100) count as one caller, whatever their number,
        # and keep their places among the others.
        large = ranking_pb2.RecommendRequest(user_id="batch-2", k=100)
        mixed = [large] * 12 + [requests[0]] + [large] * 12
        batch = await ranking.stub.RecommendBatch(ranking_pb2.RecommendBatchRequest(requests=mixed))
        assert [len(r.recommendations) for r in batch.responses] == [100] * 12 + [5] + [100] * 12
        assert top_topic(batch.responses[12])[0] == names[0]


def ranked(response: ranking_pb2.RecommendResponse) -> list[tuple[str, float]]:
    return [(r.item_id, r.score) for r in response.recommendations]


async def test_a_new_model_version_is_served_without_a_restart(
    services: Stack, base: Path, prepared: Path, other_weights: Path
) -> None:
    await services.start("ranking")
    items = items_by_topic(prepared)[sorted(items_by_topic(prepared))[0]][:5]
    request = ranking_pb2.RecommendRequest(
        history=ranking_pb2.InlineHistory(
            items=[ranking_pb2.HistoryItem(item_id=i) for i in items]
        ),
        k=20,
        diversity=0.0,
    )
    old = await recommend(services, history=request.history, k=20, diversity=0.0)
    assert old.model_version == "1"
    (base / "encoder" / ".2.partial").mkdir()  # a version being written is not picked up
    await asyncio.sleep(0.5)
    assert (await recommend(services, history=request.history)).model_version == "1"
    shutil.rmtree(base / "encoder" / ".2.partial")

    switched = asyncio.Event()

    async def call_until_switched() -> list[ranking_pb2.RecommendResponse]:
        """Calls one after another on its own channel until shortly after the switch."""
        answers = []
        async with ranking_client(services.settings()) as ranking:
            while not switched.is_set():
                answers.append(await ranking.stub.Recommend(request, timeout=10))
                if answers[-1].model_version == "2":
                    switched.set()
            answers.append(await ranking.stub.Recommend(request, timeout=10))
        return answers

    callers = [asyncio.create_task(call_until_switched()) for _ in range(4)]
    await asyncio.sleep(0.3)
    copy_version(other_weights, base, 2)
    per_caller = await asyncio.wait_for(asyncio.gather(*callers), timeout=20)

    new = await recommend(services, history=request.history, k=20, diversity=0.0)
    assert new.model_version == "2"
    assert ranked(new) != ranked(old)
    for answers in per_caller:
        versions = [a.model_version for a in answers]
        assert versions[0] == "1"
        assert versions[-1] == "2"
        assert versions == sorted(versions)  # never back to 1 once 2 answered
        for answer in answers:
            assert ranked(answer) == ranked(old if answer.model_version == "1" else new)


async def test_without_the_interest_service_the_answer_degrades(services: Stack) -> None:
    await services.start("ranking")
    await services.stop("interest")
    response = await recommend(services, user_id="someone", k=5)
    assert len(response.recommendations) == 5
    assert list(response.sources_used) == [POPULARITY]
    assert ENCODER in response.degraded_sources
    assert not response.cold_start


async def test_the_tf_serving_backend_matches_in_process_routes_labels_and_degrades(
    services: Stack, monkeypatch: pytest.MonkeyPatch, base: Path, prepared: Path
) -> None:
    topics = items_by_topic(prepared)
    history = ranking_pb2.InlineHistory(
        items=[ranking_pb2.HistoryItem(item_id=i) for i in topics[sorted(topics)[2]][:20]]
    )
    await services.start("ranking")
    in_process = await recommend(services, history=history, k=10)
    await services.stop("ranking")

    copy_version(base / "encoder" / "1", base, 2)
    config = base / "models.config"
    set_version_label(config, "encoder", "stable", 1)
    set_version_label(config, "encoder", "canary", 2)
    tf_serving = await start_prediction_service(base, config_file=config)
    try:
        monkeypatch.setenv("EVOREC_SERVING__BACKEND", "tf_serving")
        monkeypatch.setenv("EVOREC_SERVING__TF_SERVING_TARGET", f"127.0.0.1:{tf_serving.port}")
        monkeypatch.setenv("EVOREC_SERVING__VERSION_LABEL", "stable")
        monkeypatch.setenv("EVOREC_RANKING__PORT", "0")
        await services.start("ranking")
        served = await recommend(services, history=history, k=10)
        assert served.model_version == "1"
        assert [r.item_id for r in served.recommendations] == [
            r.item_id for r in in_process.recommendations
        ]
        assert [r.score for r in served.recommendations] == pytest.approx(
            [r.score for r in in_process.recommendations]
        )
        assert tf_serving.requests[-1].model_spec.version.value == 1
        await services.stop("ranking")

        monkeypatch.setenv("EVOREC_SERVING__VERSION_LABEL", "canary")
        await services.start("ranking")
        assert (await recommend(services, history=history)).model_version == "2"
        assert tf_serving.requests[-1].model_spec.version.value == 2
    finally:
        await tf_serving.stop()
    degraded = await recommend(services, history=history, k=10)
    assert ENCODER in degraded.degraded_sources
    assert degraded.model_version == ""
    assert len(degraded.recommendations) == 10
    assert ENCODER not in degraded.sources_used


class HungInterest(interest_pb2_grpc.InterestServiceServicer):
    """An interest service that accepts calls and never answers them in time."""

    async def GetRecentItems(
        self, request: interest_pb2.GetRecentItemsRequest, context: object
    ) -> interest_pb2.GetRecentItemsResponse:
        await asyncio.sleep(60)
        return interest_pb2.GetRecentItemsResponse()


async def test_a_hung_interest_service_degrades_the_answer_within_the_deadline(
    services: Stack, monkeypatch: pytest.MonkeyPatch, started: Any
) -> None:
    hung = await started(
        GrpcService(
            name=interest_pb2.DESCRIPTOR.services_by_name["InterestService"].full_name,
            register=lambda server: interest_pb2_grpc.add_InterestServiceServicer_to_server(
                HungInterest(), server
            ),
        )
    )
    monkeypatch.setenv("EVOREC_INTEREST__PORT", str(hung.port))
    await services.start("ranking")
    async with ranking_client(services.settings()) as ranking:
        began = time.monotonic()
        response = await ranking.stub.Recommend(
            ranking_pb2.RecommendRequest(user_id="someone", k=5), timeout=1.0
        )
    assert time.monotonic() - began < 1.0
    assert len(response.recommendations) == 5
    assert list(response.sources_used) == [POPULARITY]
    assert ENCODER in response.degraded_sources


async def test_a_bug_in_the_encoder_is_internal_and_counted_not_degraded(
    services: Stack, monkeypatch: pytest.MonkeyPatch, prepared: Path
) -> None:
    async def broken(*args: object) -> object:
        raise ValueError("a bug in the encoder backend")

    monkeypatch.setattr(InProcessBackend, "user_vectors", broken)
    ranking = await services.start("ranking")
    items = items_by_topic(prepared)[sorted(items_by_topic(prepared))[0]][:5]
    history = ranking_pb2.InlineHistory(items=[ranking_pb2.HistoryItem(item_id=i) for i in items])
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await recommend(services, history=history)
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        assert "request id" in (raised.value.details() or "")
    # ForecastInterests alike: not an encoder method "unavailable" with the bug's text.
    async with ranking_client(services.settings()) as client:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.stub.ForecastInterests(
                ranking_pb2.ForecastInterestsRequest(history=history, horizon=5)
            )
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "a bug in the encoder" not in (raised.value.details() or "")
    metrics = await asyncio.to_thread(scrape, ranking.metrics_port)
    assert "evorec_ranking_encoder_errors_total 3.0" in metrics


async def test_a_new_version_rolls_out_through_tf_serving_and_no_answer_loses_the_encoder(
    services: Stack, monkeypatch: pytest.MonkeyPatch, base: Path, prepared: Path
) -> None:
    config = base / "models.config"
    apply_version_policy(config, "encoder", [1])
    tf_serving = await start_prediction_service(base, config_file=config, poll_s=0.2)
    topics = items_by_topic(prepared)
    history = ranking_pb2.InlineHistory(
        items=[ranking_pb2.HistoryItem(item_id=i) for i in topics[sorted(topics)[1]][:10]]
    )
    answers: list[ranking_pb2.RecommendResponse] = []
    asking = asyncio.Event()

    async def keep_asking() -> None:
        while asking.is_set():
            answers.append(await recommend(services, history=history, k=5))

    async def served_version(version: str) -> None:
        deadline = time.monotonic() + 15
        while not answers or answers[-1].model_version != version:
            assert time.monotonic() < deadline, f"version {version} was not rolled out"
            await asyncio.sleep(0.1)

    try:
        monkeypatch.setenv("EVOREC_SERVING__BACKEND", "tf_serving")
        monkeypatch.setenv("EVOREC_SERVING__TF_SERVING_TARGET", f"127.0.0.1:{tf_serving.port}")
        # The stand-in loads SavedModels in this process, which slows every answer while it
        # does (TF Serving loads beside serving): time is not what this test is about.
        monkeypatch.setenv("EVOREC_SERVING__TIMEOUT_S", "20")
        monkeypatch.setenv("EVOREC_CLIENT__DEFAULT_TIMEOUT_S", "60")
        await services.start("ranking")
        asking.set()
        asker = asyncio.create_task(keep_asking())
        await served_version("1")
        # On disk, but not in TF Serving's config yet: not loaded, so not asked for.
        copy_version(base / "encoder" / "1", base, 2)
        await asyncio.sleep(1.0)
        assert answers[-1].model_version == "1"
        # Named by the policy: TF Serving loads it, reports it AVAILABLE, ranking follows.
        assert apply_version_policy(config, "encoder", [1, 2]) == [1, 2]
        await served_version("2")
        # A third: the newest two stay loaded, version 1 goes.
        copy_version(base / "encoder" / "2", base, 3)
        assert apply_version_policy(config, "encoder", [1, 2, 3]) == [2, 3]
        await served_version("3")
        asking.clear()
        await asker
        assert sorted(tf_serving.state.loaded["encoder"]) == [2, 3]
        assert [a.model_version for a in answers if ENCODER in a.degraded_sources] == []
        assert {a.model_version for a in answers} == {"1", "2", "3"}

        # An unloaded version is refused with TF Serving's status and message.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{tf_serving.port}") as channel:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "encoder"
            request.model_spec.version.value = 1
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        assert refused.value.details() == "Servable not found for request: Specific(encoder, 1)"
    finally:
        asking.clear()
        await tf_serving.stop()


async def test_after_repeated_encoder_outages_answers_skip_it_for_a_second(
    services: Stack, monkeypatch: pytest.MonkeyPatch, prepared: Path
) -> None:
    from evorec.ranking.service import ENCODER_FAILURES_TO_OPEN, ENCODER_OPEN_S

    calls = 0
    down = True
    original = InProcessBackend.user_vectors

    async def restarting(self: InProcessBackend, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if down:
            raise TimeoutError("the model server is restarting")
        return await original(self, *args)

    monkeypatch.setattr(InProcessBackend, "user_vectors", restarting)
    await services.start("ranking")
    items = items_by_topic(prepared)[sorted(items_by_topic(prepared))[0]][:5]
    history = ranking_pb2.InlineHistory(items=[ranking_pb2.HistoryItem(item_id=i) for i in items])
    for _ in range(ENCODER_FAILURES_TO_OPEN + 3):
        answer = await recommend(services, history=history)
        assert ENCODER in answer.degraded_sources
        assert len(answer.recommendations) > 0
    assert calls == ENCODER_FAILURES_TO_OPEN  # the later ones did not wait on the encoder

    down = False
    await asyncio.sleep(ENCODER_OPEN_S + 0.2)
    answer = await recommend(services, history=history)
    assert ENCODER not in answer.degraded_sources
    assert ENCODER in answer.sources_used
    assert calls == ENCODER_FAILURES_TO_OPEN + 1


class CutShort:
    """An embedding stub whose listings from the start fail, as when the service goes away
    again in the middle of a mirror's listing."""

    def __init__(self, stub: embedding_pb2_grpc.EmbeddingServiceAsyncStub) -> None:
        self.stub = stub

    async def ListItems(
        self, request: embedding_pb2.ListItemsRequest, **kwargs: Any
    ) -> embedding_pb2.ListItemsResponse:
        if request.after_revision == 0:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone"
            )
        return await self.stub.ListItems(request, **kwargs)


async def test_the_catalog_mirror_keeps_its_items_through_a_restart_of_the_catalog(
    stack: Stack, prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the embedding service loads, and when the listing after its restart is cut
    short, the mirror keeps the items it has; a complete listing replaces them."""
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    await stack.start("preprocess")
    server = await stack.start("embedding")
    count = len(pd.read_parquet(prepared / "items.parquet"))
    async with channel(server.port) as ch:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
        mirror = CatalogMirror(stub, stale_after_s=60)
        assert await mirror.sync()
        assert len(mirror.items) == count
        first_catalog = mirror.catalog_id
        await stack.stop("embedding")

        real_load = embedding_service._load

        def slow_load(*args: Any) -> Any:
            time.sleep(1.0)
            return real_load(*args)

        monkeypatch.setattr(embedding_service, "_load", slow_load)
        settings = stack.settings()
        running = await start_server(
            create_service("embedding", settings), settings.endpoint("embedding"), settings.server
        )
        try:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await mirror.sync()
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert raised.value.details() == "the embedding service is still loading"
            assert (len(mirror.items), mirror.catalog_id) == (count, first_catalog)
            await running.ready()

            generation = mirror.generation
            mirror.stub = CutShort(stub)  # type: ignore[assignment]
            with pytest.raises(grpc.aio.AioRpcError):
                await mirror.sync()
            assert (len(mirror.items), mirror.catalog_id) == (count, first_catalog)
            assert mirror.generation == generation

            mirror.stub = stub
            assert await mirror.sync()
            assert len(mirror.items) == count
            assert mirror.catalog_id not in ("", first_catalog)
            assert mirror.generation == generation + 1
        finally:
            await running.shutdown()
