"""Retention: per user, only the newest events (and, optionally, only the young ones) are kept.
Runs in small steps between writes, on the writer's connection."""

from __future__ import annotations

import math
import sqlite3
from itertools import pairwise

from evorec.interest.derived import DerivedChanges
from evorec.platform.validation import DAY


def enforce_retention(
    connection: sqlite3.Connection, max_events: int, min_time: float | None, max_users: int = 100
) -> int:
    """Drops, for up to `max_users` users, the oldest events beyond `max_events` or before
    `min_time`, with their derived state; returns how many events went. One short
    transaction, so that ingest waits little."""
    removed = 0
    with connection:
        connection.execute("BEGIN IMMEDIATE")
        users = connection.execute(
            "SELECT user_id, event_count FROM users"
            " WHERE event_count > ? OR first_time < ? LIMIT ?",
            (max_events, -math.inf if min_time is None else min_time, max_users),
        ).fetchall()
        state = DerivedChanges()
        for user, count in users:
            rows = connection.execute(
                "SELECT seq, event_time, topic_id FROM events WHERE user_id=?"
                " ORDER BY event_time, seq LIMIT ?",
                (user, count),
            ).fetchall()
            drop = max(0, count - max_events)
            if min_time is not None:
                drop = max(drop, sum(1 for r in rows if r[1] < min_time))
            gone, kept = rows[:drop], rows[drop:]
            # The dropped events' topics, then the first kept topic: each pair was one
            # transition (none when no dropped event has a topic).
            chain = [r[2] for r in gone if r[2] is not None]
            first_kept = next((r[2] for r in kept if r[2] is not None), None)
            for a, b in pairwise([*chain, first_kept]):
                if b is not None:
                    state.transitions[(user, a, b)] -= 1
            for _, time, topic in gone:
                if topic is not None:
                    state.days[(user, int(time // DAY), topic)] -= 1
            connection.executemany("DELETE FROM events WHERE seq=?", [(r[0],) for r in gone])
            if kept:
                connection.execute(
                    "UPDATE users SET event_count=?, first_time=? WHERE user_id=?",
                    (len(kept), kept[0][1], user),
                )
            else:
                connection.execute("DELETE FROM users WHERE user_id=?", (user,))
            removed += len(gone)
        state.apply(connection)
    return removed
