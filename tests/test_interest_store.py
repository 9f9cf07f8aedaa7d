"""The event store's schema migrations keep stored data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from evorec.interest.records import NewEvent
from evorec.interest.schema import MIGRATIONS, SCHEMA_VERSION
from evorec.interest.store import EventStore


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
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert store.unresolved_items(10) == ["i"]
        indexes = {row[1] for row in store.db.execute("PRAGMA index_list(events)")}
        assert "events_without_topic" in indexes
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
