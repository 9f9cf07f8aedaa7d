"""The event store's schema migrations keep stored data."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from evorec.interest import reads
from evorec.interest.bulk import bulk_load
from evorec.interest.derived import last_topic, recomputed_derived_state, stored_derived_state
from evorec.interest.records import NewEvent
from evorec.interest.schema import DERIVED_TABLES, MIGRATIONS, SCHEMA_VERSION
from evorec.interest.store import EventStore
from evorec.interest.tails import TailCache


def test_a_version_1_database_is_migrated_with_its_events(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    with sqlite3.connect(path) as db:
        for statement in MIGRATIONS[1]:
            db.execute(statement)
        db.execute(
            "INSERT INTO events (event_id, user_id, item_id, event_type, value, text,"
            " event_time, ingest_time, unknown_item, topic_id)"
            " VALUES ('e1', 'u', 'i', 1, NULL, '', 1.0, 1.0, 0, NULL)"
        )
        db.execute("PRAGMA user_version=1")
    store = EventStore(path)
    try:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        assert "topic_counts" not in store.db.table_names()  # topic_days summed
        assert store.unresolved_items(10) == ["i"]
        indexes = {row[1] for row in store.db.execute("PRAGMA index_list(events)")}
        assert {"events_to_backfill", "events_by_time"} <= indexes
        assert [r.event_id for r in store.export_page(0, store.log_position(), 10)] == ["e1"]
    finally:
        store.close()


def test_a_database_from_a_newer_evorec_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="this evorec knows"):
        EventStore(path)


def test_writes_report_accepted_and_duplicate_indexes(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite", durability="normal")
    try:

        def event(index: int, event_id: str, time: float) -> NewEvent:
            return NewEvent(index, event_id, "u", "i", 1, None, "", time, 0.0, "t", False)

        assert store.write([event(0, "a", 1), event(1, "b", 2), event(2, "a", 3)]) == ([0, 1], [2])
        assert store.write([event(5, "b", 2), event(6, "c", 0.5)]) == ([6], [5])
        assert [r.event_id for r in store.history("u", 10)] == ["b", "a", "c"]
    finally:
        store.close()


def test_items_without_a_topic_are_walked_page_by_page_unknown_ones_too(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite", durability="normal")
    try:
        events = [
            NewEvent(n, f"e{n}", "u", item, 1, None, "", float(n), 0.0, topic, unknown)
            for n, (item, topic, unknown) in enumerate(
                [("c", None, True), ("a", None, False), ("b", "t", False), ("d", None, True)]
            )
        ]
        store.write(events)
        assert store.unresolved_items(2) == ["a", "c"]
        assert store.unresolved_items(2, after="c") == ["d"]
        plan = store.db.execute(
            "EXPLAIN QUERY PLAN SELECT DISTINCT item_id FROM events"
            " WHERE topic_id IS NULL AND item_id > '' ORDER BY item_id LIMIT 10"
        ).fetchall()
        assert "events_to_backfill" in str(plan)
    finally:
        store.close()


def test_a_deleted_users_bytes_leave_the_database_and_its_wal(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    store = EventStore(path)
    try:

        def events(user: str, text: str, count: int) -> list[NewEvent]:
            return [
                NewEvent(n, f"{user}-{n}", user, f"i{n}", 1, None, text, float(n), 0.0, "t", False)
                for n in range(count)
            ]

        for start in range(0, 300, 50):  # several commits, as ingest makes them
            store.write(events("keeper", "kept words", 300)[start : start + 50])
            store.write(events("leaver", "PRIVATE-7f3a9c", 300)[start : start + 50])
        assert store.delete_user("leaver")[0] == 300
        for file in (path, path.with_name(path.name + "-wal")):
            if file.exists():
                raw = file.read_bytes()
                assert b"PRIVATE-7f3a9c" not in raw, file.name
                assert b"leaver" not in raw, file.name
        assert len(store.history("keeper", 1000)) == 300
    finally:
        store.close()


def test_commits_are_checkpointed_by_a_thread_of_their_own_which_close_stops(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.sqlite"
    store = EventStore(path)
    try:
        schema_only = path.stat().st_size
        store.write(
            [
                NewEvent(n, f"e{n}", f"u{n % 50}", f"i{n}", 1, None, "", float(n), 0.0, "t", False)
                for n in range(2_000)
            ]
        )
        # Far below the writer's own automatic checkpoint: only the thread copies the pages.
        assert path.with_name(path.name + "-wal").stat().st_size < 4096 * 1_000
        deadline = time.monotonic() + 10
        while path.stat().st_size == schema_only and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.stat().st_size > schema_only
        assert "evorec-checkpoints" in {t.name for t in threading.enumerate()}
    finally:
        store.close()
    assert "evorec-checkpoints" not in {t.name for t in threading.enumerate()}


def test_the_chain_of_topics_goes_on_across_events_without_a_topic(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite", durability="normal")
    day = 86_400.0
    try:

        def event(n: int, user: str, at: float, topic: str | None) -> NewEvent:
            return NewEvent(n, f"{user}{n}", user, "i", 1, None, "", at, 0.0, topic, False)

        store.write([event(0, "u", 0.5 * day, "a"), event(1, "u", 1.5 * day, "b")])
        # Three days of events of items without a topic: the newest stored has none.
        store.write([event(n, "u", (2 + n) * day, None) for n in range(2, 5)])
        store.write([event(5, "u", 9 * day, "c")])
        # A user none of whose events has a topic starts no chain.
        store.write([event(0, "v", day, None), event(1, "v", 2 * day, None)])
        store.write([event(2, "v", 3 * day, "a")])
        stored = stored_derived_state(store.db.conn)
        assert stored["topic_transitions"] == {
            ("u", "a", "b", 1),
            ("u", "b", "c", 1),
        }
        assert stored == recomputed_derived_state(store.db.conn)
        # Found by a seek to the newest event's day, not a scan of the user's history.
        statements: list[str] = []
        store.db.conn.set_trace_callback(statements.append)
        assert last_topic(store.db.conn, "u") == "c"
        store.db.conn.set_trace_callback(None)
        plans = [
            str(store.db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()) for sql in statements
        ]
        assert "events_by_user_time (user_id=? AND event_time>?)" in plans[-1]
    finally:
        store.close()


def test_a_write_by_another_connection_is_not_hidden_by_the_writers_cache(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    first, second = EventStore(path, durability="normal"), EventStore(path, durability="normal")
    try:

        def event(n: int, at: float, topic: str) -> NewEvent:
            return NewEvent(0, f"e{n}", "u", "i", 1, None, "", at, 0.0, topic, False)

        first.write([event(1, 1.0, "a")])
        assert first.tails.get("u") == (1.0, "a")  # what the next write starts from
        second.write([event(2, 2.0, "b")])  # another process, say
        first.write([event(3, 3.0, "c")])
        transitions = stored_derived_state(first.db.conn)["topic_transitions"]
        assert transitions == {("u", "a", "b", 1), ("u", "b", "c", 1)}
        first.delete_user("u")
        assert first.tails.get("u") is None
        first.write([event(4, 4.0, "d")])
        assert stored_derived_state(first.db.conn) == recomputed_derived_state(first.db.conn)
    finally:
        first.close()
        second.close()


def test_retention_empties_the_tail_cache_only_when_it_removed_events(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite", durability="normal")
    try:
        store.write(
            [
                NewEvent(n, f"e{n}", "u", "i", 1, None, "", float(n), 0.0, "t", False)
                for n in range(3)
            ]
        )
        assert store.enforce_retention(max_events=10, min_time=None) == 0
        assert store.tails.get("u") == (2.0, "t")
        assert store.enforce_retention(max_events=1, min_time=None) == 2
        assert store.tails.get("u") is None
        assert stored_derived_state(store.db.conn) == recomputed_derived_state(store.db.conn)
    finally:
        store.close()


def test_the_tail_cache_keeps_the_most_recently_written_users() -> None:
    cache = TailCache(max_users=2)
    cache.put("a", (1.0, "t"))
    cache.put("b", (2.0, None))
    cache.put("a", (3.0, "t"))  # written again: now the most recent
    cache.put("c", (4.0, "t"))
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ((3.0, "t"), None, (4.0, "t"))
    cache.check(7)
    assert len(cache) == 0  # a data version it had not seen


def test_export_pages_follow_time_order_within_the_cut_it_began_with(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite", durability="normal")
    try:

        def event(event_id: str, user: str, time: float) -> NewEvent:
            return NewEvent(0, event_id, user, "i", 1, None, "", time, 0.0, "t", False)

        # Two users interleaved in time, one tie on the time (broken by storage order).
        store.write([event("a1", "a", 1), event("a2", "a", 3), event("b1", "b", 2)])
        store.write([event("b2", "b", 3)])
        watermark = store.log_position()
        store.write([event("late", "b", 0.5)])  # after the cut, though older in time

        def export(after_seq: int, up_to: int, limit: int) -> list[str]:
            ids: list[str] = []
            position = None
            while True:
                page = store.export_page(after_seq, up_to, limit, position)
                ids += [row.event_id for row in page]
                if len(page) < limit:
                    return ids
                position = (page[-1].event_time, page[-1].seq)

        assert export(0, watermark, 2) == export(0, watermark, 100) == ["a1", "b1", "a2", "b2"]
        assert export(watermark, store.log_position(), 1) == ["late"]
        store.delete_user("b")
        # Positions never go back, so an event stored after a deletion is after the cut.
        assert store.log_position() == watermark + 1
        assert export(0, store.log_position(), 1) == ["a1", "a2"]
    finally:
        store.close()


def _bulk_events() -> list[NewEvent]:
    """Events of a few users with topics, gaps without one, equal times and late arrivals."""
    events = []
    for n in range(600):
        user = f"u{n % 7}"
        time = float((n * 37) % 500) * 3600.0 + (n % 3) * 0.25
        topic = None if n % 11 == 0 else f"t{(n * 13) % 5}"
        item = f"i{n % 40}"
        events.append(NewEvent(n, f"e{n:05d}", user, item, 1, None, "", time, 0.0, topic, False))
    return events


def test_a_bulk_load_builds_the_state_that_ingest_builds(tmp_path: Path) -> None:
    events = _bulk_events()
    ingested = EventStore(tmp_path / "ingested.sqlite", durability="normal")
    try:
        for start in range(0, len(events), 50):  # many groups: late events go the slow path
            ingested.write(events[start : start + 50])
        rows = [
            (e.event_id, e.user_id, e.item_id, e.event_type, e.value, e.text, e.event_time,
             e.ingest_time, int(e.unknown_item), e.topic_id)
            for e in events
        ]  # fmt: skip
        assert bulk_load(tmp_path / "bulk.sqlite", iter(rows)) == len(events)
        loaded = EventStore(tmp_path / "bulk.sqlite", durability="normal")
        try:
            for table in DERIVED_TABLES:
                query = f"SELECT * FROM {table} ORDER BY 1, 2, 3"
                expected = ingested.db.execute(query).fetchall()
                assert loaded.db.execute(query).fetchall() == expected, table
                assert expected
            assert loaded.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            indexes = {row[1] for row in loaded.db.execute("PRAGMA index_list(events)")}
            assert {"events_by_user_time", "events_to_backfill", "events_by_time"} <= indexes
            assert [r.event_id for r in loaded.history("u3", 5)] == [
                r.event_id for r in ingested.history("u3", 5)
            ]
            with pytest.raises(ValueError, match="already holds events"):
                bulk_load(tmp_path / "bulk.sqlite", iter(rows[:1]))
        finally:
            loaded.close()
    finally:
        ingested.close()


def test_a_bulk_load_refuses_two_events_with_one_id(tmp_path: Path) -> None:
    row = ("e1", "u", "i", 1, None, "", 1.0, 0.0, 0, "t")
    with pytest.raises(ValueError, match="share an event id"):
        bulk_load(tmp_path / "bulk.sqlite", iter([row, row]))


def test_retention_drops_events_without_a_topic_and_keeps_the_state_exact(
    tmp_path: Path,
) -> None:
    """Dropped events none of which has a topic end no transition: retention once raised on
    them and rolled back, and since the same users came first at every step, it stopped for
    every user."""
    store = EventStore(tmp_path / "events.sqlite", durability="normal")
    try:
        chains = {
            "none-dropped": [None, None, "a", "b"],  # no dropped event has a topic
            "only": [None, None, None],  # no event has one
            "mixed": [None, "a", None, "b", "a"],  # a dropped one has, before a kept one
            "gap": ["a", None, None, "b"],  # the kept events start without one
            "later": ["a", "b", "c"],  # behind the others in the users table
        }
        store.write(
            [
                NewEvent(n, f"{user}{n}", user, "i", 1, None, "", float(n), 0.0, t, t is None)
                for user, topics in chains.items()
                for n, t in enumerate(topics)
            ]
        )
        removed = 0
        while step := store.enforce_retention(max_events=2, min_time=None, max_users=1):
            removed += step
        assert removed == sum(len(topics) - 2 for topics in chains.values())
        assert stored_derived_state(store.db.conn) == recomputed_derived_state(store.db.conn)
        assert {user for user, *_ in stored_derived_state(store.db.conn)["users"]} == set(chains)
        assert all(len(store.history(user, 10)) == 2 for user in chains)
        # By age too: everything before time 3 goes, whatever its topic, and so do users
        # left with no event.
        assert store.enforce_retention(max_events=10, min_time=3.0) == 6
        assert stored_derived_state(store.db.conn) == recomputed_derived_state(store.db.conn)
        assert {user for user, *_ in stored_derived_state(store.db.conn)["users"]} == {
            "none-dropped",
            "mixed",
            "gap",
        }
    finally:
        store.close()


def test_a_profiles_state_is_read_at_one_point_while_writes_go_on(tmp_path: Path) -> None:
    """The users row, transitions, days and recent topics come from one read transaction: a
    write that commits between two of the reads is in none of them."""
    store = EventStore(tmp_path / "events.sqlite", durability="normal")
    try:

        def events(first: int, count: int) -> list[NewEvent]:
            return [
                NewEvent(n, f"e{n}", "u", "i", 1, None, "", float(n), 0.0, "ab"[n % 2], False)
                for n in range(first, first + count)
            ]

        store.write(events(0, 4))

        class WriteBetween:
            """The reader's connection, with a write committed once before the read of the
            transitions (as another thread's ingest may)."""

            def __init__(self, connection: sqlite3.Connection) -> None:
                self.connection = connection
                self.written = False

            def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
                if "topic_transitions" in sql and not self.written:
                    self.written = True
                    store.write(events(4, 3))
                return self.connection.execute(sql, *args)

        reader = WriteBetween(store.reader)
        state = reads.user_state(reader, "u", 20)  # type: ignore[arg-type]
        assert reader.written
        assert state is not None
        assert state.event_count == sum(state.topic_counts.values()) == 4
        assert state.transitions == {("a", "b"): 2, ("b", "a"): 1}
        assert state.recent_topics == ["b", "a", "b", "a"]
        assert not store.reader.in_transaction
        after = store.user_state("u", 20)
        assert after is not None
        assert after.event_count == 7
    finally:
        store.close()
