"""Ranking's hot path: users' newest items read in calls shared by concurrent requests
(`evorec.ranking.history`), and answers identical to the per-request computation it replaced.

The reader is tested against interest services scripted for the case (on real gRPC servers on
loopback ports); the answers against the real four services over the simulated data."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest

from evorec.data.artifacts import DatasetLayout
from evorec.encoder.backends import Batcher
from evorec.encoder.bundle import ModelBundle
from evorec.platform import context
from evorec.platform.clients import interest_client, open_channel, ranking_client
from evorec.platform.config import ClientSettings
from evorec.platform.errors import FieldViolation, InvalidArgument, ResourceExhausted
from evorec.platform.server import GrpcService
from evorec.ranking.history import RecentItemsReader
from evorec.ranking.item_space import ItemSpace
from evorec.ranking.recommender import Query, recommend
from evorec.ranking.settings import RecommendSettings
from evorec.v1 import interest_pb2, interest_pb2_grpc, ranking_pb2
from tests.conftest import Stack
from tests.test_ranking_service import ingest

VIEW = 1


class ScriptedInterest(interest_pb2_grpc.InterestServiceServicer):
    """Answers GetRecentItems with one item per user (`x-USER`), after `delay` seconds; with
    `single_only`, refuses `user_ids` as a version from before it did (its user_id check);
    with `unavailable`, fails every call as UNAVAILABLE."""

    def __init__(
        self,
        delay: float = 0.0,
        single_only: bool = False,
        unavailable: bool = False,
        max_users: int | None = None,
        shedding: bool = False,
    ) -> None:
        self.delay = delay
        self.single_only = single_only
        self.unavailable = unavailable
        # Answers too large for a message past this many users: refused as the interest
        # service refuses them (RESOURCE_EXHAUSTED naming user_ids and limit).
        self.max_users = max_users
        # Refuses every call as an overloaded server does (RESOURCE_EXHAUSTED, no field).
        self.shedding = shedding
        self.requests: list[interest_pb2.GetRecentItemsRequest] = []

    async def GetRecentItems(
        self, request: interest_pb2.GetRecentItemsRequest, context: Any
    ) -> interest_pb2.GetRecentItemsResponse:
        self.requests.append(request)
        await asyncio.sleep(self.delay)
        if self.unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted outage")
        if not request.user_ids:
            return interest_pb2.GetRecentItemsResponse(
                item_ids=[f"x-{request.user_id}"], types=[VIEW]
            )
        if self.single_only:
            raise InvalidArgument("user_id must be 1 to 128 characters")
        if self.shedding:
            raise ResourceExhausted("overloaded: retry later")
        if self.max_users is not None and len(request.user_ids) > self.max_users:
            too_large = "the answer would be over the server's largest message"
            raise ResourceExhausted(
                violations=[
                    FieldViolation("user_ids", too_large),
                    FieldViolation("limit", too_large),
                ]
            )
        return interest_pb2.GetRecentItemsResponse(
            users=[
                interest_pb2.RecentItems(item_ids=[f"x-{user}"], types=[VIEW])
                for user in request.user_ids
            ]
        )


INTEREST = interest_pb2.DESCRIPTOR.services_by_name["InterestService"]


def channel(port: int) -> grpc.aio.Channel:
    """A channel as ranking opens one: the deadline and request id of the current inbound
    call are passed on by its interceptor."""
    return open_channel(f"127.0.0.1:{port}", INTEREST, ClientSettings())


async def serve(started: Any, servicer: ScriptedInterest) -> int:
    server = await started(
        GrpcService(
            name=INTEREST.full_name,
            register=lambda s: interest_pb2_grpc.add_InterestServiceServicer_to_server(servicer, s),
        )
    )
    port: int = server.port
    return port


async def test_concurrent_users_share_calls_and_each_gets_their_own_items(started: Any) -> None:
    scripted = ScriptedInterest(delay=0.05)
    async with channel(await serve(started, scripted)) as ch:
        reader = RecentItemsReader(interest_pb2_grpc.InterestServiceStub(ch), limit=7)
        try:
            first = asyncio.create_task(reader.recent("first", 5.0))
            await asyncio.sleep(0.02)  # its call is under way
            users = [f"u{n}" for n in range(40)]
            found = await asyncio.gather(*(reader.recent(u, 5.0) for u in users))
            alone = await first
        finally:
            await reader.close()
    assert list(alone.item_ids) == ["x-first"]
    assert [list(f.item_ids) for f in found] == [[f"x-{u}"] for u in users]
    # The first went alone, at once; the rest arrived while it ran and went together.
    assert [(r.user_id, list(r.user_ids)) for r in scripted.requests] == [
        ("first", []),
        ("", users),
    ]
    assert {r.limit for r in scripted.requests} == {7}


async def test_a_shared_call_too_large_for_one_message_is_asked_in_halves(
    started: Any,
) -> None:
    scripted = ScriptedInterest(delay=0.05, max_users=8)
    async with channel(await serve(started, scripted)) as ch:
        reader = RecentItemsReader(interest_pb2_grpc.InterestServiceStub(ch), limit=7)
        try:
            first = asyncio.create_task(reader.recent("first", 5.0))
            await asyncio.sleep(0.02)  # its call is under way; the next 40 go together
            users = [f"u{n}" for n in range(40)]
            found = await asyncio.gather(*(reader.recent(u, 5.0) for u in users))
            await first
        finally:
            await reader.close()
    assert [list(f.item_ids) for f in found] == [[f"x-{u}"] for u in users]
    sizes = [len(r.user_ids) for r in scripted.requests[1:]]
    assert sizes[0] == 40
    assert max(size for size in sizes if size <= 8) <= 8
    assert sum(size for size in sizes if size <= 8) == 40  # each user asked for once


async def test_an_overloaded_interest_service_is_not_asked_again_in_halves(
    started: Any,
) -> None:
    scripted = ScriptedInterest(delay=0.05, shedding=True)
    async with channel(await serve(started, scripted)) as ch:
        reader = RecentItemsReader(interest_pb2_grpc.InterestServiceStub(ch), limit=7)
        try:
            first = asyncio.create_task(reader.recent("first", 5.0))
            await asyncio.sleep(0.02)
            answers = await asyncio.gather(
                *(reader.recent(f"u{n}", 5.0) for n in range(10)), return_exceptions=True
            )
            await asyncio.gather(first, return_exceptions=True)
        finally:
            await reader.close()
    assert all(isinstance(a, grpc.aio.AioRpcError) for a in answers)
    assert [len(r.user_ids) for r in scripted.requests] == [0, 10]


async def test_a_short_time_limit_fails_only_its_own_request(started: Any) -> None:
    scripted = ScriptedInterest(delay=0.3)
    async with channel(await serve(started, scripted)) as ch:
        reader = RecentItemsReader(interest_pb2_grpc.InterestServiceStub(ch), limit=7)
        try:
            hurried, patient = await asyncio.gather(
                reader.recent("hurried", 0.05), reader.recent("patient", 5.0),
                return_exceptions=True,
            )  # fmt: skip
        finally:
            await reader.close()
    assert isinstance(hurried, TimeoutError)
    assert isinstance(patient, interest_pb2.RecentItems)
    assert list(patient.item_ids) == ["x-patient"]


async def test_calls_do_not_inherit_the_first_callers_deadline(started: Any) -> None:
    scripted = ScriptedInterest(delay=0.05)
    async with channel(await serve(started, scripted)) as ch:
        reader = RecentItemsReader(interest_pb2_grpc.InterestServiceStub(ch), limit=7)

        async def hurried_inbound_call() -> interest_pb2.RecentItems:
            context.deadline.set(time.monotonic() + 0.5)
            return await reader.recent("first", 0.5)

        try:
            assert list((await hurried_inbound_call()).item_ids) == ["x-first"]
            await asyncio.sleep(0.6)  # the first inbound call's deadline has passed
            later = await reader.recent("later", 5.0)
        finally:
            await reader.close()
    assert list(later.item_ids) == ["x-later"]


async def test_an_interest_service_without_user_ids_is_asked_user_by_user(started: Any) -> None:
    scripted = ScriptedInterest(delay=0.05, single_only=True)
    async with channel(await serve(started, scripted)) as ch:
        reader = RecentItemsReader(interest_pb2_grpc.InterestServiceStub(ch), limit=7)
        try:
            users = [f"u{n}" for n in range(5)]
            found = await asyncio.gather(*(reader.recent(u, 5.0) for u in users))
            again = await asyncio.gather(*(reader.recent(u, 5.0) for u in users))
        finally:
            await reader.close()
    assert [list(f.item_ids) for f in found] == [[f"x-{u}"] for u in users]
    assert [list(f.item_ids) for f in again] == [[f"x-{u}"] for u in users]
    assert not reader.shared_calls
    # One refused call for several users; every other call names one user.
    assert sum(1 for r in scripted.requests if r.user_ids) == 1


async def test_a_failed_call_reaches_every_request_it_carried(started: Any) -> None:
    scripted = ScriptedInterest(delay=0.05, unavailable=True)
    async with channel(await serve(started, scripted)) as ch:
        reader = RecentItemsReader(interest_pb2_grpc.InterestServiceStub(ch), limit=7)
        try:
            outcomes = await asyncio.gather(
                *(reader.recent(f"u{n}", 5.0) for n in range(3)), return_exceptions=True
            )
        finally:
            await reader.close()
    # One call for the three (the channel retries UNAVAILABLE: each attempt names them all).
    assert {tuple(r.user_ids) for r in scripted.requests} == {("u0", "u1", "u2")}
    assert [o.code() for o in outcomes if isinstance(o, grpc.aio.AioRpcError)] == [
        grpc.StatusCode.UNAVAILABLE
    ] * 3


def reference_answer(
    space: ItemSpace,
    recent: interest_pb2.GetRecentItemsResponse,
    request: ranking_pb2.RecommendRequest,
    vector: np.ndarray | None,
    settings: RecommendSettings,
) -> ranking_pb2.RecommendResponse:
    """The answer as ranking computed it before its hot-path work (commit 6dc44ac): the
    user's GetRecentItems of their own, turned into a query, recommend(), the response."""
    found = [(space.index.get(i), t) for i, t in zip(recent.item_ids, recent.types, strict=True)]
    known = [(i, t) for i, t in reversed(found) if i is not None]
    query = Query(
        history=np.array([i for i, _ in known], dtype=np.int64),
        event_types=np.array([t for _, t in known], dtype=np.int32),
        k=request.k,
        diversity=request.diversity if request.HasField("diversity") else settings.diversity,
        exclude_seen=True,
        include_topics=list(request.filter.include_topic_ids),
    )
    answer = recommend(space, query, vector, settings)
    return ranking_pb2.RecommendResponse(
        recommendations=[
            ranking_pb2.Recommendation(
                item_id=space.ids[item.index],
                score=item.score,
                sources=item.sources,  # type: ignore[arg-type]
                reason=item.reason,
                topic_id=space.topic_of(item.index),
                title=space.titles[item.index],
            )
            for item in answer.items
        ],
        model_version=str(space.bundle.version) if vector is not None else "",
        sources_used=answer.sources_used,  # type: ignore[arg-type]
        degraded_sources=[],
        cold_start=answer.cold_start,
    )


@pytest.fixture
def base(tmp_path: Path, model_base: Path) -> Path:
    shutil.copytree(model_base, tmp_path / "models")
    return tmp_path / "models"


@pytest.fixture
async def services(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, prepared: Path, base: Path
) -> Stack:
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    monkeypatch.setenv("EVOREC_SERVING__BASE_PATH", str(base))
    for name in ("preprocess", "embedding", "interest"):
        await stack.start(name)
    return stack


async def test_concurrent_answers_equal_the_per_request_computation(
    services: Stack, prepared: Path, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The encoder is not what changed: the vectors it gave are recorded by history, and the
    # reference is computed with the very same vector.
    vectors: dict[tuple[int, ...], np.ndarray] = {}
    original = Batcher.user_vector

    async def recording(
        self: Batcher,
        history: np.ndarray,
        version: int,
        time_limit: float | None,
        max_len: int | None = None,
    ) -> tuple[np.ndarray, int]:
        vector, answered = await original(self, history, version, time_limit, max_len)
        vectors[tuple(history.tolist())] = vector
        return vector, answered

    monkeypatch.setattr(Batcher, "user_vector", recording)
    await services.start("ranking")
    layout = DatasetLayout(prepared)
    events = pd.read_parquet(layout.events)
    rng = random.Random(0)
    users = sorted(events["user_id"].unique())[:24]
    for number, user in enumerate(users):
        items = events.loc[events["user_id"] == user, "item_id"].tolist()[-30:]
        await ingest(services, user, items, 1_700_000_000 + 1_000 * number)
    topics = sorted(pd.read_parquet(layout.items)["topic_id"].dropna().unique())
    requests = [
        ranking_pb2.RecommendRequest(user_id="nobody", k=5),
        *(
            ranking_pb2.RecommendRequest(
                user_id=user,
                k=rng.choice([1, 5, 10, 40]),
                diversity=rng.choice([0.0, 0.2, 0.9]),
                filter=ranking_pb2.RecommendFilter(
                    include_topic_ids=rng.sample(topics, 2) if rng.random() < 0.3 else []
                ),
            )
            for user in users
        ),
    ]
    # One request per user: a user asked twice in one batch may get vectors a float's last
    # bit apart from two model batches, which the record above could not tell apart.
    async with ranking_client(services.settings()) as ranking:
        answers = await asyncio.gather(*(ranking.stub.Recommend(r) for r in requests))
    space = ItemSpace(ModelBundle.load(base / "encoder" / "1"), {})
    settings = RecommendSettings()
    async with interest_client(services.settings()) as interest:
        for request, answer in zip(requests, answers, strict=True):
            recent = await interest.stub.GetRecentItems(
                interest_pb2.GetRecentItemsRequest(user_id=request.user_id, limit=1000)
            )
            history = [space.index[i] for i in reversed(recent.item_ids) if i in space.index]
            window = tuple(h for h in history if h <= space.n_model_items)[-space.bundle.max_len :]
            vector = vectors[window] if window else None
            expected = reference_answer(space, recent, request, vector, settings)
            assert answer == expected, request
    assert {len(a.recommendations) for a in answers} >= {5, 10}
