"""InterestService over gRPC, with the real preprocess and embedding services behind it."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from itertools import pairwise
from pathlib import Path

import grpc
import pandas as pd
import pytest
from google.protobuf.duration_pb2 import Duration

from evorec.interest.plot import plot_profile
from evorec.interest.records import NewEvent
from evorec.interest.store import EventStore
from evorec.platform.config import Settings
from evorec.platform.errors import field_violations
from evorec.platform.validation import DAY, MAX_EVENT_TEXT_CHARS, MAX_ID_CHARS
from evorec.v1 import common_pb2, interest_pb2_grpc
from evorec.v1 import interest_pb2 as pb
from tests.conftest import Stack
from tests.support import channel

VIEW = common_pb2.EVENT_TYPE_VIEW


@pytest.fixture
async def interest(
    stack: Stack, prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[interest_pb2_grpc.InterestServiceAsyncStub]:
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    monkeypatch.setenv("EVOREC_INTEREST_STATE__RETENTION_INTERVAL_S", "0.1")
    for name in ("preprocess", "embedding"):
        await stack.start(name)
    server = await stack.start("interest")
    async with channel(server.port) as ch:
        yield interest_pb2_grpc.InterestServiceStub(ch)


def event(event_id: str, user: str, item: str, at: int, kind: int = VIEW) -> common_pb2.Event:
    return common_pb2.Event(
        event_id=event_id, user_id=user, item_id=item, type=kind, event_time={"seconds": at}
    )


def synthetic_events(prepared: Path, user: str) -> list[common_pb2.Event]:
    events = pd.read_parquet(prepared / "events.parquet")
    rows = events[events["user_id"] == user]
    return [
        event(f"{user}-{n}", user, item, int(at))
        for n, (item, at) in enumerate(zip(rows["item_id"], rows["timestamp"], strict=True))
    ]


def topic_of(prepared: Path) -> dict[str, str]:
    items = pd.read_parquet(prepared / "items.parquet")
    return dict(zip(items["item_id"], items["topic_id"], strict=True))


def database(settings_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(settings_dir / "interest" / "events.sqlite")


def derived_state_is_consistent(db: sqlite3.Connection, user: str) -> None:
    """The incrementally kept counts equal those recomputed from the stored events."""
    rows = db.execute(
        "SELECT topic_id, event_time FROM events WHERE user_id=? ORDER BY event_time, seq", (user,)
    ).fetchall()
    chain = [t for t, _ in rows if t is not None]
    counts = dict(
        db.execute(
            "SELECT topic_id, SUM(count) FROM topic_days WHERE user_id=? GROUP BY topic_id", (user,)
        ).fetchall()
    )
    days = Counter((int(time // DAY), topic) for topic, time in rows if topic is not None)
    assert days == {
        (day, topic): n
        for day, topic, n in db.execute(
            "SELECT day, topic_id, count FROM topic_days WHERE user_id=?", (user,)
        )
    }
    transitions = {
        (a, b): n
        for a, b, n in db.execute(
            "SELECT from_topic, to_topic, count FROM topic_transitions WHERE user_id=?", (user,)
        )
    }
    assert counts == dict(Counter(chain))
    assert transitions == dict(Counter(pairwise(chain)))
    (stored,) = db.execute("SELECT event_count FROM users WHERE user_id=?", (user,)).fetchone() or (
        0,
    )
    assert stored == len(rows)


async def test_an_acknowledged_event_is_in_the_next_history_and_profile(
    interest: interest_pb2_grpc.InterestServiceAsyncStub, prepared: Path
) -> None:
    events = synthetic_events(prepared, "u1")
    response = await interest.IngestEvents(pb.IngestEventsRequest(events=events))
    assert response.summary.accepted_count == len(events)
    history = await interest.GetUserHistory(pb.GetUserHistoryRequest(user_id="u1", page_size=1))
    assert history.events[0].event.event_id == events[-1].event_id
    profile = (
        await interest.GetInterestProfile(pb.GetInterestProfileRequest(user_id="u1"))
    ).profile
    assert profile.event_count == len(events)
    topics = topic_of(prepared)
    expected = Counter(topics[e.item_id] for e in events)
    assert {w.topic_id: w.weight for w in profile.long_term.weights} == pytest.approx(
        {t: n / len(events) for t, n in expected.items()}
    )
    assert all(w.label for w in profile.long_term.weights)


async def test_a_retried_batch_is_stored_once(
    interest: interest_pb2_grpc.InterestServiceAsyncStub, prepared: Path, settings: object
) -> None:
    events = synthetic_events(prepared, "u2")[:10]
    first = await interest.IngestEvents(pb.IngestEventsRequest(events=events + events[:2]))
    assert (first.summary.accepted_count, first.summary.duplicate_count) == (10, 2)
    again = await interest.IngestEvents(pb.IngestEventsRequest(events=events))
    assert (again.summary.accepted_count, again.summary.duplicate_count) == (0, 10)
    history = await interest.GetUserHistory(pb.GetUserHistoryRequest(user_id="u2"))
    assert len(history.events) == 10


async def test_invalid_events_are_rejected_one_by_one_and_the_rest_stored(
    interest: interest_pb2_grpc.InterestServiceAsyncStub,
) -> None:
    events = [
        event("ok-1", "v", "i0", 1_600_000_000),
        event("", "v", "i0", 1_600_000_001),
        event("bad-type", "v", "i0", 1_600_000_002, kind=common_pb2.EVENT_TYPE_UNSPECIFIED),
        event("future", "v", "i0", 4_000_000_000),
        common_pb2.Event(event_id="long", user_id="v", item_id="i0", type=VIEW, text="x" * 10_001),
        event("ok-2", "v", "not-in-catalog", 1_600_000_005),
    ]
    response = await interest.IngestEvents(pb.IngestEventsRequest(events=events))
    summary = response.summary
    assert (summary.accepted_count, summary.rejected_count, summary.unknown_item_count) == (2, 4, 1)
    assert [(r.index, r.field) for r in summary.rejected] == [
        (1, "events[1].event_id"),
        (2, "events[2].type"),
        (3, "events[3].event_time"),
        (4, "events[4].text"),
    ]
    history = await interest.GetUserHistory(pb.GetUserHistoryRequest(user_id="v"))
    assert [(e.event.event_id, e.unknown_item) for e in history.events] == [
        ("ok-2", True),
        ("ok-1", False),
    ]


async def test_a_batch_over_the_limit_is_refused_whole(
    interest: interest_pb2_grpc.InterestServiceAsyncStub,
) -> None:
    events = [event(f"e{n}", "big", "i0", 1_600_000_000 + n) for n in range(10_001)]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await interest.IngestEvents(pb.IngestEventsRequest(events=events))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [v.field for v in field_violations(raised.value)] == ["events"]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await interest.GetInterestProfile(pb.GetInterestProfileRequest(user_id="big"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_out_of_order_events_are_placed_by_time_and_the_state_stays_exact(
    interest: interest_pb2_grpc.InterestServiceAsyncStub, prepared: Path, settings: object
) -> None:
    events = synthetic_events(prepared, "u4")
    shuffled = events[:]
    random.Random(4).shuffle(shuffled)
    for start in range(0, len(shuffled), 7):
        await interest.IngestEvents(pb.IngestEventsRequest(events=shuffled[start : start + 7]))
    pages, token = [], ""
    while True:
        page = await interest.GetUserHistory(
            pb.GetUserHistoryRequest(user_id="u4", page_size=6, page_token=token)
        )
        pages += [e.event.event_id for e in page.events]
        token = page.next_page_token
        if not token:
            break
    by_time = sorted(events, key=lambda e: (e.event_time.seconds, int(e.event_id.split("-")[1])))
    assert [e.event_id for e in by_time] == [e.event_id for e in events]
    assert pages == [e.event_id for e in reversed(events)]
    with database(settings.data_dir) as db:  # type: ignore[attr-defined]
        derived_state_is_consistent(db, "u4")


async def test_history_time_bounds_and_bad_tokens(
    interest: interest_pb2_grpc.InterestServiceAsyncStub,
) -> None:
    await interest.IngestEvents(
        pb.IngestEventsRequest(
            events=[event(f"t{n}", "w", "i0", 1_600_000_000 + 100 * n) for n in range(5)]
        )
    )
    bounded = await interest.GetUserHistory(
        pb.GetUserHistoryRequest(
            user_id="w", start_time={"seconds": 1_600_000_100}, end_time={"seconds": 1_600_000_400}
        )
    )
    assert [e.event.event_id for e in bounded.events] == ["t3", "t2", "t1"]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await interest.GetUserHistory(pb.GetUserHistoryRequest(user_id="w", page_token="!!"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(raised.value)] == ["page_token"]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await interest.GetUserHistory(
            pb.GetUserHistoryRequest(user_id="w", end_time={"seconds": 2**63 - 1})
        )
    assert [v.field for v in field_violations(raised.value)] == ["end_time"]


@pytest.mark.parametrize("field", ["half_life", "timeline_bucket"])
@pytest.mark.parametrize("seconds", [2**63 - 1, -(2**63)])
async def test_an_extreme_duration_is_an_invalid_argument_not_an_internal_error(
    interest: interest_pb2_grpc.InterestServiceAsyncStub, field: str, seconds: int
) -> None:
    await interest.IngestEvents(
        pb.IngestEventsRequest(events=[event("d1", "d", "i0", 1_000_000_000)])
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await interest.GetInterestProfile(
            pb.GetInterestProfileRequest(user_id="d", **{field: Duration(seconds=seconds)})
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(raised.value)] == [field]


async def test_the_profile_predicts_with_markov_and_sees_a_switch(
    interest: interest_pb2_grpc.InterestServiceAsyncStub, prepared: Path, tmp_path: Path
) -> None:
    topics = sorted(set(topic_of(prepared).values()))
    items = pd.read_parquet(prepared / "items.parquet")
    first = items[items["topic_id"] == topics[0]]["item_id"].tolist()
    second = items[items["topic_id"] == topics[1]]["item_id"].tolist()
    # 40 events of the first topic, then 20 of the second: a sudden switch.
    history = [
        event(f"s{n}", "switcher", first[n % len(first)], 1_600_000_000 + 3600 * n)
        for n in range(40)
    ]
    history += [
        event(f"s{40 + n}", "switcher", second[n % len(second)], 1_600_144_000 + 3600 * n)
        for n in range(20)
    ]
    await interest.IngestEvents(pb.IngestEventsRequest(events=history))
    profile = (
        await interest.GetInterestProfile(
            pb.GetInterestProfileRequest(
                user_id="switcher", horizon=5, timeline_bucket=Duration(seconds=86_400)
            )
        )
    ).profile
    assert {w.topic_id: w.weight for w in profile.short_term.weights} == {topics[1]: 1.0}
    assert {w.topic_id: round(w.weight, 4) for w in profile.long_term.weights} == {
        topics[0]: round(40 / 60, 4), topics[1]: round(20 / 60, 4),
    }  # fmt: skip
    assert profile.drift_score > 0.4
    markov = next(p for p in profile.predictions if p.method == pb.PREDICTION_METHOD_MARKOV)
    # From the second topic, 19 of its 19 transitions stay there.
    assert {w.topic_id: w.weight for w in markov.distribution.weights} == pytest.approx(
        {topics[1]: 1.0}
    )
    assert [t.topic_id for t in profile.rising] == [topics[1]]
    assert [t.topic_id for t in profile.falling] == [topics[0]]
    assert sum(b.event_count for b in profile.timeline) == 60
    plot_profile(profile, tmp_path / "switcher.png")
    assert (tmp_path / "switcher.png").read_bytes()[:4] == b"\x89PNG"
    assert profile.timeline[0].distribution.weights[0].topic_id == topics[0]
    assert profile.timeline[-1].distribution.weights[0].topic_id == topics[1]


async def test_delete_user_leaves_no_trace(
    interest: interest_pb2_grpc.InterestServiceAsyncStub, prepared: Path, settings: object
) -> None:
    for user in ("u5", "u6"):
        await interest.IngestEvents(pb.IngestEventsRequest(events=synthetic_events(prepared, user)))
    deleted = await interest.DeleteUser(pb.DeleteUserRequest(user_id="u5"))
    assert deleted.deleted_event_count == len(synthetic_events(prepared, "u5"))
    assert deleted.deleted_state_count > 0
    assert len((await interest.GetUserHistory(pb.GetUserHistoryRequest(user_id="u5"))).events) == 0
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await interest.GetInterestProfile(pb.GetInterestProfileRequest(user_id="u5"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with database(settings.data_dir) as db:  # type: ignore[attr-defined]
        for table in ("events", "users", "topic_transitions", "topic_days"):
            assert db.execute(f"SELECT COUNT(*) FROM {table} WHERE user_id='u5'").fetchone() == (0,)
        derived_state_is_consistent(db, "u6")
    again = await interest.DeleteUser(pb.DeleteUserRequest(user_id="u5"))
    assert (again.deleted_event_count, again.deleted_state_count) == (0, 0)


async def test_retention_keeps_the_newest_events_and_exact_state(
    stack: Stack, prepared: Path, monkeypatch: pytest.MonkeyPatch, settings: object
) -> None:
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    monkeypatch.setenv("EVOREC_INTEREST_STATE__RETENTION_MAX_EVENTS", "10")
    monkeypatch.setenv("EVOREC_INTEREST_STATE__RETENTION_INTERVAL_S", "0.05")
    for name in ("preprocess", "embedding"):
        await stack.start(name)
    server = await stack.start("interest")
    events = synthetic_events(prepared, "u7")
    async with channel(server.port) as ch:
        stub = interest_pb2_grpc.InterestServiceStub(ch)
        await stub.IngestEvents(pb.IngestEventsRequest(events=events))
        for _ in range(100):
            history = await stub.GetUserHistory(pb.GetUserHistoryRequest(user_id="u7"))
            if len(history.events) == 10:
                break
            await asyncio.sleep(0.05)
        assert [e.event.event_id for e in history.events] == [
            e.event_id for e in reversed(events[-10:])
        ]
    with database(settings.data_dir) as db:  # type: ignore[attr-defined]
        derived_state_is_consistent(db, "u7")


def stream(messages: list[list[common_pb2.Event]]) -> Iterator[pb.StreamEventsRequest]:
    for events in messages:
        yield pb.StreamEventsRequest(events=events)


async def test_a_stream_is_stored_message_by_message(
    interest: interest_pb2_grpc.InterestServiceAsyncStub,
) -> None:
    messages = [
        [event(f"m{n}", "s", "i0", 1_600_000_000 + n) for n in range(start, start + 3)]
        for start in (0, 3, 6)
    ]
    messages[1].append(event("", "s", "i0", 1))
    response = await interest.StreamEvents(stream(messages))
    summary = response.summary
    assert (summary.accepted_count, summary.rejected_count) == (9, 1)
    assert [(r.index, r.field) for r in summary.rejected] == [(6, "events[3].event_id")]


async def test_events_of_a_broken_stream_that_arrived_stay_stored(
    interest: interest_pb2_grpc.InterestServiceAsyncStub,
) -> None:
    sent = asyncio.Event()

    async def breaking() -> AsyncIterator[pb.StreamEventsRequest]:
        yield pb.StreamEventsRequest(events=[event("b0", "broken", "i0", 1_600_000_000)])
        sent.set()
        await asyncio.sleep(3600)
        yield pb.StreamEventsRequest()

    call = interest.StreamEvents(breaking())
    await sent.wait()
    for _ in range(100):
        history = await interest.GetUserHistory(pb.GetUserHistoryRequest(user_id="broken"))
        if history.events:
            break
        await asyncio.sleep(0.02)
    call.cancel()
    assert [e.event.event_id for e in history.events] == ["b0"]


async def test_events_stored_while_the_catalog_is_down_get_their_topics_later(
    stack: Stack, prepared: Path, monkeypatch: pytest.MonkeyPatch, settings: object
) -> None:
    from evorec.platform.probes import free_port

    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    monkeypatch.setenv("EVOREC_EMBEDDING__PORT", str(free_port()))  # nothing listens yet
    monkeypatch.setenv("EVOREC_CLIENT__RETRY_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("EVOREC_INTEREST_STATE__TOPIC_BACKFILL_INTERVAL_S", "0.2")
    await stack.start("preprocess")
    server = await stack.start("interest")
    events = synthetic_events(prepared, "u8")
    async with channel(server.port) as ch:
        stub = interest_pb2_grpc.InterestServiceStub(ch)
        shuffled = events[:]
        random.Random(8).shuffle(shuffled)
        await stub.IngestEvents(pb.IngestEventsRequest(events=shuffled[:20]))
        await stack.start("embedding")  # on the port the interest service was told
        await stub.IngestEvents(pb.IngestEventsRequest(events=shuffled[20:]))
        for _ in range(100):
            profile = (
                await stub.GetInterestProfile(pb.GetInterestProfileRequest(user_id="u8"))
            ).profile
            if sum(w.weight for w in profile.long_term.weights) > 0 and _resolved(settings) == len(
                events
            ):
                break
            await asyncio.sleep(0.1)
    topics = topic_of(prepared)
    expected = Counter(topics[e.item_id] for e in events)
    assert {w.topic_id: round(w.weight, 6) for w in profile.long_term.weights} == {
        t: round(n / len(events), 6) for t, n in expected.items()
    }
    with database(settings.data_dir) as db:  # type: ignore[attr-defined]
        derived_state_is_consistent(db, "u8")


def _resolved(settings: object) -> int:
    with database(settings.data_dir) as db:  # type: ignore[attr-defined]
        return int(
            db.execute("SELECT COUNT(*) FROM events WHERE topic_id IS NOT NULL").fetchone()[0]
        )


async def test_recent_items_are_the_newest_events_items_compactly(
    interest: interest_pb2_grpc.InterestServiceAsyncStub,
) -> None:
    events = [
        event("r1", "reader", "i1", 100),
        event("r3", "reader", "i3", 300, common_pb2.EVENT_TYPE_PURCHASE),
        event("r2", "reader", "i2", 200),
    ]
    await interest.IngestEvents(pb.IngestEventsRequest(events=events))
    recent = await interest.GetRecentItems(pb.GetRecentItemsRequest(user_id="reader", limit=2))
    assert list(recent.item_ids) == ["i3", "i2"]
    assert list(recent.types) == [common_pb2.EVENT_TYPE_PURCHASE, VIEW]
    everything = await interest.GetRecentItems(pb.GetRecentItemsRequest(user_id="reader"))
    assert list(everything.item_ids) == ["i3", "i2", "i1"]
    nobody = await interest.GetRecentItems(pb.GetRecentItemsRequest(user_id="nobody"))
    assert list(nobody.item_ids) == []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await interest.GetRecentItems(pb.GetRecentItemsRequest(user_id="reader", limit=1001))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(raised.value)] == ["limit"]


async def test_recent_items_of_several_users_come_in_one_call_in_their_order(
    interest: interest_pb2_grpc.InterestServiceAsyncStub,
) -> None:
    events = [
        event("s1", "ann", "i1", 100),
        event("s2", "bob", "i2", 200, common_pb2.EVENT_TYPE_PURCHASE),
        event("s3", "ann", "i3", 300),
    ]
    await interest.IngestEvents(pb.IngestEventsRequest(events=events))
    both = await interest.GetRecentItems(
        pb.GetRecentItemsRequest(user_ids=["bob", "nobody", "ann"], limit=1)
    )
    assert list(both.item_ids) == []
    assert [list(u.item_ids) for u in both.users] == [["i2"], [], ["i3"]]
    assert [list(u.types) for u in both.users] == [[common_pb2.EVENT_TYPE_PURCHASE], [], [VIEW]]
    # Each user's answer is the one a call for that user alone gives.
    alone = await interest.GetRecentItems(pb.GetRecentItemsRequest(user_id="ann"))
    together = await interest.GetRecentItems(pb.GetRecentItemsRequest(user_ids=["ann", "ann"]))
    assert [list(u.item_ids) for u in together.users] == [list(alone.item_ids)] * 2
    for request, code, fields in [
        (
            pb.GetRecentItemsRequest(user_id="ann", user_ids=["bob"]),
            "INVALID_ARGUMENT",
            ["user_id"],
        ),
        (pb.GetRecentItemsRequest(user_ids=["bob", ""]), "INVALID_ARGUMENT", ["user_ids[1]"]),
        (pb.GetRecentItemsRequest(user_ids=["u"] * 257), "RESOURCE_EXHAUSTED", ["user_ids"]),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await interest.GetRecentItems(request)
        assert raised.value.code() == getattr(grpc.StatusCode, code)
        assert [v.field for v in field_violations(raised.value)] == fields


async def test_events_of_an_item_the_catalog_learns_later_get_its_topic(
    stack: Stack, prepared: Path, monkeypatch: pytest.MonkeyPatch, settings: object
) -> None:
    from evorec.interest import topics as topic_cache
    from evorec.v1 import embedding_pb2, embedding_pb2_grpc

    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    monkeypatch.setenv("EVOREC_INTEREST_STATE__TOPIC_BACKFILL_INTERVAL_S", "0.2")
    monkeypatch.setattr(topic_cache, "UNKNOWN_ITEM_RETRY_S", 0.2)
    for name in ("preprocess", "embedding"):
        await stack.start(name)
    server = await stack.start("interest")
    known = synthetic_events(prepared, "u9")[:12]
    # The new item's events fall before, between and after the known ones.
    late = [event(f"late-{n}", "u9", "late-item", int(known[n].event_time.seconds) + 1)
            for n in (0, 5, 11)]  # fmt: skip
    described = json.loads((prepared / "text" / "topics.json").read_text())["topics"][1]
    async with channel(server.port) as ch:
        stub = interest_pb2_grpc.InterestServiceStub(ch)
        ingested = await stub.IngestEvents(pb.IngestEventsRequest(events=known + late))
        assert ingested.summary.unknown_item_count == len(late)
        async with channel(stack.running["embedding"].port) as embedding_channel:
            await embedding_pb2_grpc.EmbeddingServiceStub(embedding_channel).UpsertItems(
                embedding_pb2.UpsertItemsRequest(
                    items=[
                        embedding_pb2.Item(
                            item_id="late-item",
                            title="Late",
                            text=" ".join(described["top_words"] * 4),
                        )
                    ]
                )
            )
        for _ in range(100):
            if _resolved(settings) == len(known) + len(late):
                break
            await asyncio.sleep(0.1)
        profile = (
            await stub.GetInterestProfile(pb.GetInterestProfileRequest(user_id="u9"))
        ).profile
    assert profile.event_count == len(known) + len(late)
    with database(settings.data_dir) as db:  # type: ignore[attr-defined]
        (late_topic,) = db.execute(
            "SELECT DISTINCT topic_id FROM events WHERE item_id='late-item'"
        ).fetchone()
        derived_state_is_consistent(db, "u9")
    assert late_topic == described["topic_id"]
    topics = topic_of(prepared)
    expected = Counter([topics[e.item_id] for e in known] + [late_topic] * len(late))
    assert {w.topic_id: round(w.weight, 6) for w in profile.long_term.weights} == {
        t: round(n / (len(known) + len(late)), 6) for t, n in expected.items()
    }


async def export_all(
    interest: interest_pb2_grpc.InterestServiceAsyncStub, **request: int
) -> tuple[list[pb.ExportEventsResponse], list[str]]:
    messages = [m async for m in interest.ExportEvents(pb.ExportEventsRequest(**request))]
    return messages, [e.event.event_id for m in messages for e in m.events]


async def test_export_streams_every_event_in_time_order_then_only_what_came_later(
    interest: interest_pb2_grpc.InterestServiceAsyncStub, prepared: Path
) -> None:
    events = [e for user in ("u1", "u2", "u3") for e in synthetic_events(prepared, user)]
    await interest.IngestEvents(pb.IngestEventsRequest(events=events))
    messages, ids = await export_all(interest, page_size=7)
    by_time = sorted(events, key=lambda e: e.event_time.seconds)
    assert [e.event.event_time.seconds for m in messages for e in m.events] == [
        e.event_time.seconds for e in by_time
    ]
    assert sorted(ids) == sorted(e.event_id for e in events)
    assert all(len(m.events) <= 7 for m in messages)
    assert len(messages) == -(-len(events) // 7)
    watermark = messages[0].watermark
    assert watermark > 0
    assert {m.watermark for m in messages} == {watermark}
    # A late event (older than all) and a deletion after the cut: the next export since the
    # watermark holds just the late event; a full export no longer holds the deleted user.
    late = event("late-1", "u4", "i1", 1)
    await interest.IngestEvents(pb.IngestEventsRequest(events=[late]))
    await interest.DeleteUser(pb.DeleteUserRequest(user_id="u2"))
    since, since_ids = await export_all(interest, after_watermark=watermark)
    assert since_ids == ["late-1"]
    assert since[0].watermark > watermark
    _, everything = await export_all(interest, page_size=10_000)
    assert everything[0] == "late-1"
    assert not {e.event_id for e in synthetic_events(prepared, "u2")} & set(everything)
    assert len(everything) == len(events) + 1 - len(synthetic_events(prepared, "u2"))


async def test_an_empty_export_still_says_its_watermark_and_bad_requests_are_refused(
    interest: interest_pb2_grpc.InterestServiceAsyncStub,
) -> None:
    messages, ids = await export_all(interest)
    assert ids == []
    assert [m.watermark for m in messages] == [0]
    for request, field in (
        (pb.ExportEventsRequest(page_size=10_001), "page_size"),
        (pb.ExportEventsRequest(after_watermark=-1), "after_watermark"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            _ = [m async for m in interest.ExportEvents(request)]
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in field_violations(raised.value)] == [field]


async def test_pages_and_export_messages_of_long_texts_stay_within_the_send_limit(
    stack: Stack, prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events with long texts: a history page holds fewer than `page_size` of them, an
    export message fewer than its `page_size`, each within half the server's largest
    message, rather than the call failing with RESOURCE_EXHAUSTED; a GetRecentItems answer
    over it is refused, naming what to lower."""
    limit = 64 * 1024
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    monkeypatch.setenv("EVOREC_SERVER__MAX_SEND_MESSAGE_BYTES", str(limit))
    monkeypatch.setenv("EVOREC_SERVER__MAX_RECEIVE_MESSAGE_BYTES", str(limit))
    for name in ("preprocess", "embedding"):
        await stack.start(name)
    server = await stack.start("interest")
    reviews = [
        common_pb2.Event(
            event_id=f"r{n}",
            user_id="reviewer",
            item_id="i1",
            type=common_pb2.EVENT_TYPE_REVIEW,
            text="x" * MAX_EVENT_TEXT_CHARS,
            event_time={"seconds": 1_000 + n},
        )
        for n in range(7)
    ]
    long_id = "y" * MAX_ID_CHARS
    views = [event(f"v{n}", "viewer", long_id, 2_000 + n) for n in range(600)]
    async with channel(server.port) as ch:
        stub = interest_pb2_grpc.InterestServiceStub(ch)
        for batch in (reviews[:4], reviews[4:], views[:300], views[300:]):  # receive limit
            ingested = await stub.IngestEvents(pb.IngestEventsRequest(events=batch))
            assert ingested.summary.accepted_count == len(batch)
        pages: list[pb.GetUserHistoryResponse] = []
        token = ""
        while not pages or token:
            pages.append(
                await stub.GetUserHistory(
                    pb.GetUserHistoryRequest(user_id="reviewer", page_size=1000, page_token=token)
                )
            )
            token = pages[-1].next_page_token
        assert [len(page.events) for page in pages] == [3, 3, 1]
        assert [e.event.event_id for page in pages for e in page.events] == [
            f"r{n}" for n in reversed(range(7))
        ]
        assert all(page.ByteSize() <= limit // 2 for page in pages)
        messages, ids = await export_all(stub, page_size=10_000)
        assert ids == [f"r{n}" for n in range(7)] + [f"v{n}" for n in range(600)]
        assert all(m.ByteSize() <= limit // 2 for m in messages)
        assert [len(m.events) for m in messages][:2] == [3, 3]
        assert len({m.watermark for m in messages}) == 1
        # 400 ids of 128 characters fit in 64 KiB, 600 do not.
        fits = await stub.GetRecentItems(pb.GetRecentItemsRequest(user_id="viewer", limit=400))
        assert list(fits.item_ids) == [long_id] * 400
        for request, fields in (
            (pb.GetRecentItemsRequest(user_id="viewer", limit=1000), ["limit"]),
            (
                pb.GetRecentItemsRequest(user_ids=["viewer", "viewer"], limit=300),
                ["user_ids", "limit"],
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.GetRecentItems(request)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            violations = field_violations(raised.value)
            assert [v.field for v in violations] == fields
            assert "server.max_send_message_bytes" in violations[0].description


async def test_ids_holding_u0000_are_refused_naming_the_field(
    interest: interest_pb2_grpc.InterestServiceAsyncStub, settings: Settings
) -> None:
    """SQLite's json_each ends a string at U+0000, so such an id would read as another: it
    is refused, in every field that holds one. A user stored before can still be deleted."""
    summary = (
        await interest.IngestEvents(
            pb.IngestEventsRequest(
                events=[
                    event("e\x00", "u", "i1", 100),
                    event("e1", "u\x00v", "i1", 100),
                    event("e2", "u", "i\x00", 100),
                    event("e3", "u", "i1", 100),
                ]
            )
        )
    ).summary
    assert summary.accepted_count == 1
    assert [(r.index, r.field, r.reason) for r in summary.rejected] == [
        (0, "events[0].event_id", "must not contain U+0000"),
        (1, "events[1].user_id", "must not contain U+0000"),
        (2, "events[2].item_id", "must not contain U+0000"),
    ]
    for call, request, field in (
        (interest.GetUserHistory, pb.GetUserHistoryRequest(user_id="u\x00v"), "user_id"),
        (interest.GetInterestProfile, pb.GetInterestProfileRequest(user_id="\x00"), "user_id"),
        (
            interest.GetRecentItems,
            pb.GetRecentItemsRequest(user_ids=["u", "u\x00v"]),
            "user_ids[1]",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(request)  # type: ignore[operator]
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [(v.field, v.description) for v in field_violations(raised.value)] == [
            (field, "must not contain U+0000")
        ]
    earlier = EventStore(settings.data_dir / "interest" / "events.sqlite", durability="normal")
    try:
        earlier.write([NewEvent(0, "old", "u\x00v", "i1", 1, None, "", 100.0, 0.0, None, True)])
    finally:
        earlier.close()
    deleted = await interest.DeleteUser(pb.DeleteUserRequest(user_id="u\x00v"))
    assert deleted.deleted_event_count == 1


async def test_current_interest_stays_defined_for_events_many_half_lives_old(
    interest: interest_pb2_grpc.InterestServiceAsyncStub, prepared: Path
) -> None:
    """Weights 2^(-age / half-life) of events 5 days old with a 1-minute half-life are 0.0 in
    floating point: ages count from the newest day, so `current` still has its topics."""
    topics = topic_of(prepared)
    first, second = (
        next(i for i, t in sorted(topics.items()) if t == topic)
        for topic in sorted(set(topics.values()))[:2]
    )
    noon = (int(time.time() // DAY) - 5) * DAY + DAY / 2
    await interest.IngestEvents(
        pb.IngestEventsRequest(
            events=[
                event("o1", "old", first, int(noon - DAY)),
                event("o2", "old", second, int(noon)),
            ]
        )
    )

    async def current(half_life: Duration) -> dict[str, float]:
        request = pb.GetInterestProfileRequest(user_id="old", half_life=half_life)
        profile = (await interest.GetInterestProfile(request)).profile
        return {w.topic_id: w.weight for w in profile.current.weights}

    assert await current(Duration(seconds=60)) == pytest.approx({topics[second]: 1.0})
    # Within range, the weights are what they were: the older day weighs half at a
    # half-life of one day.
    assert await current(Duration(seconds=int(DAY))) == pytest.approx(
        {topics[second]: 2 / 3, topics[first]: 1 / 3}
    )
