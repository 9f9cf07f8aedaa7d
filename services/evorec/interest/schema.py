"""The interest store's tables and their migrations.

`events` holds every event, unique on the caller's event id, indexed per user by time; the
derived tables (see `derived`) are kept up to date in the same transaction as each write, so
that a profile never scans a history: `users` (counts and time span), `topic_transitions`
(consecutive topic pairs per user, in time order: the Markov counts n_ij) and `topic_days`
(events per user, topic and day: the timeline, the time decay and, summed, the long-term
counts per topic).
"""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

SCHEMA_VERSION = 5

_DDL = [
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        event_type INTEGER NOT NULL,
        value REAL,
        text TEXT NOT NULL,
        event_time REAL NOT NULL,
        ingest_time REAL NOT NULL,
        unknown_item INTEGER NOT NULL,
        topic_id TEXT
    )""",
    "CREATE INDEX events_by_user_time ON events (user_id, event_time, seq)",
    """CREATE TABLE users (
        user_id TEXT PRIMARY KEY, event_count INTEGER NOT NULL,
        first_time REAL NOT NULL, last_time REAL NOT NULL
    )""",
    """CREATE TABLE topic_counts (
        user_id TEXT NOT NULL, topic_id TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (user_id, topic_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE topic_transitions (
        user_id TEXT NOT NULL, from_topic TEXT NOT NULL, to_topic TEXT NOT NULL,
        count INTEGER NOT NULL, PRIMARY KEY (user_id, from_topic, to_topic)
    ) WITHOUT ROWID""",
    """CREATE TABLE topic_days (
        user_id TEXT NOT NULL, day INTEGER NOT NULL, topic_id TEXT NOT NULL,
        count INTEGER NOT NULL, PRIMARY KEY (user_id, day, topic_id)
    ) WITHOUT ROWID""",
]
# Migrations by the schema version they lead to; the database's PRAGMA user_version says
# which it has. A new schema appends a step; a step is never edited once released.
MIGRATIONS: dict[int, list[str]] = {
    1: _DDL,
    # 2: the topic back-fill finds events stored without a topic without a table scan.
    2: [
        "CREATE INDEX events_without_topic ON events (item_id)"
        " WHERE topic_id IS NULL AND unknown_item = 0"
    ],
    # 3: ... and the events of items the catalog did not know yet, too.
    3: [
        "DROP INDEX events_without_topic",
        "CREATE INDEX events_to_backfill ON events (item_id) WHERE topic_id IS NULL",
    ],
    # 4: ExportEvents reads the whole log in time order, one page after another.
    4: ["CREATE INDEX events_by_time ON events (event_time, seq)"],
    # 5: events per user and topic are topic_days summed; keeping them apart cost every
    # ingested event an upsert.
    5: ["DROP TABLE topic_counts"],
}
DERIVED_TABLES = ("users", "topic_transitions", "topic_days")


def migrate(db: sqlite_utils.Database, path: Path) -> None:
    """Brings the database at `path` to SCHEMA_VERSION, one step per transaction."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path} has schema {version}; this evorec knows {SCHEMA_VERSION}")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with db.conn:
            db.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[target]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={target}")
