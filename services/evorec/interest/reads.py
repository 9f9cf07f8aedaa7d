"""Reads of the interest store: a user's newest items, a page of history, the derived state,
the event log in time order (export). Each runs on the calling thread's own connection, in
parallel with writes (WAL)."""

from __future__ import annotations

import sqlite3
from typing import Any

from evorec.interest.records import StoredRow, UserState


def recent_items(
    connection: sqlite3.Connection, user_id: str, limit: int
) -> tuple[list[str], list[int]]:
    """The item and event type of the user's newest `limit` events, newest first."""
    rows = connection.execute(
        "SELECT item_id, event_type FROM events WHERE user_id=?"
        " ORDER BY event_time DESC, seq DESC LIMIT ?",
        (user_id, limit),
    ).fetchall()
    return [row[0] for row in rows], [row[1] for row in rows]


def history(
    connection: sqlite3.Connection,
    user_id: str,
    limit: int,
    start_time: float | None = None,
    end_time: float | None = None,
    before: tuple[float, int] | None = None,
) -> list[StoredRow]:
    """Up to `limit` events of the user, newest first, in [start_time, end_time), older
    than the position `before` (event_time, seq) when given."""
    clauses, values = ["user_id=?"], [user_id]
    if start_time is not None:
        clauses.append("event_time >= ?")
        values.append(start_time)  # type: ignore[arg-type]
    if end_time is not None:
        clauses.append("event_time < ?")
        values.append(end_time)  # type: ignore[arg-type]
    if before is not None:
        clauses.append("(event_time < ? OR (event_time = ? AND seq < ?))")
        values += [before[0], before[0], before[1]]  # type: ignore[list-item]
    rows = connection.execute(
        f"SELECT {_ROW_COLUMNS} FROM events WHERE "
        + " AND ".join(clauses)
        + " ORDER BY event_time DESC, seq DESC LIMIT ?",
        [*values, limit],
    ).fetchall()
    return [_stored_row(row) for row in rows]


def log_position(connection: sqlite3.Connection) -> int:
    """The newest position of the event log: the highest `seq` ever given, which never goes
    back (AUTOINCREMENT), even when the newest events are deleted."""
    row = connection.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
    return int(row[0]) if row else 0


def export_page(
    connection: sqlite3.Connection,
    after_seq: int,
    up_to_seq: int,
    limit: int,
    after: tuple[float, int] | None = None,
) -> list[StoredRow]:
    """Up to `limit` events stored in (after_seq, up_to_seq], oldest first by (event_time,
    seq), following the position `after` when given: one page of an export. Paging by
    position rather than offset keeps each page one index range, and the `seq` bound keeps
    every page within the cut the export began with."""
    clauses = ["seq > ?", "seq <= ?"]
    values: list[float | int] = [after_seq, up_to_seq]
    if after is not None:
        clauses.append("(event_time > ? OR (event_time = ? AND seq > ?))")
        values += [after[0], after[0], after[1]]
    rows = connection.execute(
        f"SELECT {_ROW_COLUMNS} FROM events INDEXED BY events_by_time WHERE "
        + " AND ".join(clauses)
        + " ORDER BY event_time, seq LIMIT ?",
        [*values, limit],
    ).fetchall()
    return [_stored_row(row) for row in rows]


_ROW_COLUMNS = (
    "seq, event_id, user_id, item_id, event_type, value, text, event_time, ingest_time,"
    " unknown_item, topic_id"
)


def _stored_row(row: tuple[Any, ...]) -> StoredRow:
    return StoredRow(
        seq=row[0], event_id=row[1], user_id=row[2], item_id=row[3], event_type=row[4],
        value=row[5], text=row[6], event_time=row[7], ingest_time=row[8],
        unknown_item=bool(row[9]), topic_id=row[10],
    )  # fmt: skip


def user_state(connection: sqlite3.Connection, user_id: str, recent: int) -> UserState | None:
    """The user's derived state, or None for a user with no events.

    Its four reads run in one read transaction: the connection is in autocommit mode, and a
    write committed between two of them would otherwise mix two points in time (the users
    row of one, the days of the next)."""
    connection.execute("BEGIN")
    try:
        return _user_state(connection, user_id, recent)
    finally:
        connection.execute("COMMIT")


def _user_state(connection: sqlite3.Connection, user_id: str, recent: int) -> UserState | None:
    read = connection.execute
    user = read(
        "SELECT event_count, first_time, last_time FROM users WHERE user_id=?", (user_id,)
    ).fetchone()
    if user is None:
        return None
    transitions = {
        (a, b): n
        for a, b, n in read(
            "SELECT from_topic, to_topic, count FROM topic_transitions WHERE user_id=?",
            (user_id,),
        )
    }
    days = [
        (int(d), str(t), int(n))
        for d, t, n in read(
            "SELECT day, topic_id, count FROM topic_days WHERE user_id=? ORDER BY day", (user_id,)
        )
    ]
    summed: dict[str, int] = {}  # events per topic: the days summed
    for _, topic, count in days:
        summed[topic] = summed.get(topic, 0) + count
    topics = {topic: summed[topic] for topic in sorted(summed)}  # in topic order, as stored
    recent_topics = [
        row[0]
        for row in read(
            "SELECT topic_id FROM events WHERE user_id=? AND topic_id IS NOT NULL"
            " ORDER BY event_time DESC, seq DESC LIMIT ?",
            (user_id, recent),
        )
    ]
    return UserState(
        event_count=int(user[0]),
        first_time=float(user[1]),
        last_time=float(user[2]),
        topic_counts=topics,
        transitions=transitions,
        days=days,
        recent_topics=recent_topics,
        last_topic=recent_topics[0] if recent_topics else None,
    )
