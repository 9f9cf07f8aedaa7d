"""The state derived from a user's events (topic transitions, events per topic and day, the
user's count and span), changed by increments gathered during a transaction and applied at
its end."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence

from evorec.interest.records import NewEvent
from evorec.platform.validation import DAY


def neighbour_topic(
    connection: sqlite3.Connection, user: str, time: float, seq: int, before: bool
) -> str | None:
    """Topic of the user's nearest event with a topic before (or after) position (time, seq)."""
    if before:
        sql = (
            "SELECT topic_id FROM events WHERE user_id=? AND topic_id IS NOT NULL AND"
            " (event_time < ? OR (event_time = ? AND seq < ?))"
            " ORDER BY event_time DESC, seq DESC LIMIT 1"
        )
    else:
        sql = (
            "SELECT topic_id FROM events WHERE user_id=? AND topic_id IS NOT NULL AND"
            " (event_time > ? OR (event_time = ? AND seq > ?))"
            " ORDER BY event_time, seq LIMIT 1"
        )
    row = connection.execute(sql, (user, time, time, seq)).fetchone()
    return None if row is None else str(row[0])


def last_topic(connection: sqlite3.Connection, user: str) -> str | None:
    """Topic of the user's newest event that has one (None: no event has one).

    `topic_days` says which day that event falls on, so the search reads that day's events
    and the ones after it, not the whole history: a user whose newest events have no topic
    (items the catalog does not know) would otherwise cost a scan of every stored event of
    theirs at each write."""
    (day,) = connection.execute(
        "SELECT max(day) FROM topic_days WHERE user_id=?", (user,)
    ).fetchone()
    if day is None:
        return None
    row = connection.execute(
        "SELECT topic_id FROM events WHERE user_id=? AND event_time >= ?"
        " AND topic_id IS NOT NULL ORDER BY event_time DESC, seq DESC LIMIT 1",
        (user, day * DAY),
    ).fetchone()
    return None if row is None else str(row[0])


class DerivedChanges:
    """Changes to the derived tables, gathered during a transaction, applied at its end."""

    def __init__(self) -> None:
        self.transitions: Counter[tuple[str, str, str]] = Counter()
        self.days: Counter[tuple[str, int, str]] = Counter()
        self.users: dict[str, tuple[int, float, float]] = {}

    def join_chain(self, user: str, before: str | None, topic: str, after: str | None) -> None:
        """An event of `topic` now stands between events of topics `before` and `after` in
        its user's chain of topics: before -> after becomes before -> topic -> after."""
        if before is not None and after is not None:
            self.transitions[(user, before, after)] -= 1
        if before is not None:
            self.transitions[(user, before, topic)] += 1
        if after is not None:
            self.transitions[(user, topic, after)] += 1

    def append(self, user: str, previous: str | None, events: Sequence[NewEvent]) -> None:
        """Counts the user's new events (at least one, in time order), which all come after
        the user's stored ones: the chain of topics goes on from `previous`, the topic it
        ends with so far (None: no event has a topic yet). The common case of ingest, once
        per user and group, so it is written for speed: one pass, plain dict lookups rather
        than Counter's __missing__."""
        transitions, days = self.transitions, self.days
        for event in events:
            topic = event.topic_id
            if topic is None:
                continue
            if previous is not None:
                pair = (user, previous, topic)
                transitions[pair] = transitions.get(pair, 0) + 1
            previous = topic
            day = (user, int(event.event_time // DAY), topic)
            days[day] = days.get(day, 0) + 1
        self.users[user] = (len(events), events[0].event_time, events[-1].event_time)

    def add_counts(self, user: str, events: Sequence[NewEvent]) -> None:
        """Counts the user's new events (at least one), in any order; their transitions are
        the caller's (`join_chain`)."""
        days = self.days
        first = last = events[0].event_time
        for event in events:
            at = event.event_time
            if at < first:
                first = at
            elif at > last:
                last = at
            topic = event.topic_id
            if topic is not None:
                day = (user, int(at // DAY), topic)
                days[day] = days.get(day, 0) + 1
        self.users[user] = (len(events), first, last)

    def apply(self, connection: sqlite3.Connection) -> None:
        upsert = "ON CONFLICT DO UPDATE SET count = count + excluded.count"
        connection.executemany(
            f"INSERT INTO topic_transitions VALUES (?,?,?,?) {upsert}",
            [(*k, n) for k, n in self.transitions.items() if n],
        )
        connection.executemany(
            f"INSERT INTO topic_days VALUES (?,?,?,?) {upsert}",
            [(*k, n) for k, n in self.days.items() if n],
        )
        connection.executemany(
            "INSERT INTO users VALUES (?,?,?,?) ON CONFLICT DO UPDATE SET"
            " event_count = event_count + excluded.event_count,"
            " first_time = min(first_time, excluded.first_time),"
            " last_time = max(last_time, excluded.last_time)",
            [(user, *values) for user, values in self.users.items()],
        )
        # Rows that decrements brought to zero go (only those keys: no table scan).
        for table, keys, columns in (
            ("topic_transitions", self.transitions, "user_id=? AND from_topic=? AND to_topic=?"),
            ("topic_days", self.days, "user_id=? AND day=? AND topic_id=?"),
        ):
            lowered = [key for key, n in keys.items() if n < 0]
            connection.executemany(f"DELETE FROM {table} WHERE {columns} AND count <= 0", lowered)


DerivedState = dict[str, set[tuple[object, ...]]]  # table -> its rows


def stored_derived_state(connection: sqlite3.Connection) -> DerivedState:
    """The derived tables as they are stored, every row of each."""
    return {
        table: set(connection.execute(f"SELECT {columns} FROM {table}"))
        for table, columns in (
            ("users", "user_id, event_count, first_time, last_time"),
            ("topic_transitions", "user_id, from_topic, to_topic, count"),
            ("topic_days", "user_id, day, topic_id, count"),
        )
    }


def recomputed_derived_state(connection: sqlite3.Connection) -> DerivedState:
    """The derived tables recomputed from the stored events alone, in the same row shape as
    `stored_derived_state`: what the increments must add up to, whatever order the events
    came in and however often a writer died (the durability proof compares the two)."""
    users: dict[str, tuple[int, float, float]] = {}
    transitions: Counter[tuple[str, str, str]] = Counter()
    days: Counter[tuple[str, int, str]] = Counter()
    previous: dict[str, str] = {}  # each user's newest topic so far in the walk
    rows = connection.execute(
        "SELECT user_id, topic_id, event_time FROM events ORDER BY user_id, event_time, seq"
    )
    for user, topic, time in rows:
        count, first, last = users.get(user, (0, time, time))
        users[user] = (count + 1, min(first, time), max(last, time))
        if topic is None:
            continue
        days[(user, int(time // DAY), topic)] += 1
        if user in previous:
            transitions[(user, previous[user], topic)] += 1
        previous[user] = topic
    return {
        "users": {(user, *values) for user, values in users.items()},
        "topic_transitions": {(*key, n) for key, n in transitions.items()},
        "topic_days": {(*key, n) for key, n in days.items()},
    }
