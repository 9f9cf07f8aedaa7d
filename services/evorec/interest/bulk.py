"""Bulk loading of an empty event store: millions of events written straight into the
tables, the indexes and the derived state built afterwards by sorting, rather than row by
row as ingest does. It serves the benchmarks and sweeps that need a store of 10 or 50
million events (the RPCs would take hours to fill one), and any move of a history from
another store into a new one.

It is not a way around ingest's checks: the caller gives events already valid (ids within
their limits, known types, times after 1970) with their topics resolved, and the store must
be empty and not served while it loads. The result is the same database that ingest would
have built from the same events (tests/test_interest_store.py compares the two): the same
rows, indexes and derived state, in WAL mode. Nothing is fsynced until the end (one fsync of
the file), so a load that is interrupted leaves a store to delete, not one to serve.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from evorec.interest.schema import DERIVED_TABLES
from evorec.interest.store import EventStore
from evorec.platform.validation import DAY

# (event_id, user_id, item_id, event_type, value, text, event_time, ingest_time,
#  unknown_item, topic_id): the columns of `events`, in this order.
BulkRow = tuple[str, str, str, int, float | None, str, float, float, int, str | None]
LOAD_CHUNK = 100_000  # rows per executemany: bounds the memory a generator's rows take
# The indexes that are dropped while loading and built again, sorted, at the end.
_SECONDARY_INDEXES = ("events_by_user_time", "events_to_backfill", "events_by_time")


def _day(event_time: float) -> int:
    """The day number ingest gives an event (`derived.DerivedChanges.add_counts`)."""
    return int(event_time // DAY)


def bulk_load(path: Path, rows: Iterable[BulkRow]) -> int:
    """Loads `rows` into the empty store at `path` (created when missing); returns how many
    events it holds. Raises ValueError when the store already holds events, or when two rows
    share an event id (the store is then left half-loaded: delete it)."""
    EventStore(path, durability="normal").close()  # creates or migrates the schema
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        if connection.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None:
            raise ValueError(f"{path} already holds events: bulk loading needs an empty store")
        indexes = {
            name: sql
            for name, sql in connection.execute(
                "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='events'"
            )
            if name in _SECONDARY_INDEXES
        }
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-262144")
        connection.create_function("evorec_day", 1, _day, deterministic=True)
        for name in indexes:
            connection.execute(f"DROP INDEX {name}")
        loaded = 0
        iterator: Iterator[BulkRow] = iter(rows)
        try:
            while chunk := list(islice(iterator, LOAD_CHUNK)):
                connection.execute("BEGIN")
                connection.executemany(
                    "INSERT INTO events (event_id, user_id, item_id, event_type, value, text,"
                    " event_time, ingest_time, unknown_item, topic_id)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?)",
                    chunk,
                )
                connection.execute("COMMIT")
                loaded += len(chunk)
        except sqlite3.IntegrityError as error:
            raise ValueError(f"two events share an event id: {error}") from error
        connection.execute("BEGIN")
        for sql in indexes.values():
            connection.execute(sql)
        _derive(connection)
        connection.execute("COMMIT")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    with path.open("rb+") as written:  # the whole load reaches the disk here, once
        os.fsync(written.fileno())
    return loaded


def _derive(connection: sqlite3.Connection) -> None:
    """The derived tables from the events, each in one sorted pass: what ingest adds one
    event at a time (see `derived`)."""
    for table in DERIVED_TABLES:
        connection.execute(f"DELETE FROM {table}")
    connection.execute(
        "INSERT INTO users SELECT user_id, count(*), min(event_time), max(event_time)"
        " FROM events GROUP BY user_id"
    )
    connection.execute(
        "INSERT INTO topic_days SELECT user_id, evorec_day(event_time) AS day, topic_id,"
        " count(*) FROM events WHERE topic_id IS NOT NULL GROUP BY user_id, day, topic_id"
    )
    # The chain of topics per user, in time order, events without a topic left out.
    connection.execute(
        "INSERT INTO topic_transitions SELECT user_id, previous, topic_id, count(*) FROM ("
        " SELECT user_id, topic_id, lag(topic_id) OVER"
        "  (PARTITION BY user_id ORDER BY event_time, seq) AS previous"
        " FROM events WHERE topic_id IS NOT NULL)"
        " WHERE previous IS NOT NULL GROUP BY user_id, previous, topic_id"
    )
