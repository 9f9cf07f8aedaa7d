"""The durable event store of the interest service: one SQLite file in WAL mode.

Tables: `events` (every event, unique on the caller's event id, indexed per user by time),
and the state derived from them, kept up to date in the same transaction as each write, so
that a profile never scans a history: `users` (counts and time span), `topic_counts` (events
per user and topic), `topic_transitions` (consecutive topic pairs per user, in time order:
the Markov counts n_ij) and `topic_days` (events per user, topic and day: the timeline and
the time decay).

Durability: WAL with `synchronous=FULL` (the default) fsyncs each commit, so an event
acknowledged to a caller survives `kill -9` and a power cut; `normal` survives `kill -9`
only. Writes happen on one thread (the caller's writer), reads on any thread, each with its
own connection; WAL lets reads run while a write commits. Transient SQLite errors ("database
is locked" from another process, for one) are retried with tenacity, a bounded number of
times.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import sqlite_utils
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

SCHEMA_VERSION = 2
DAY = 86_400.0
_CHUNK = 900  # SQLite variables per statement, well under its limit
WRITER_CACHE_KIB = 65_536


def _transient(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and (
        "locked" in str(error) or "busy" in str(error)
    )


retry_transient = retry(
    retry=retry_if_exception(_transient),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.01, max=0.5),
    reraise=True,
)


@dataclass
class NewEvent:
    """A validated event on its way into the store."""

    index: int  # its position in the caller's batch
    event_id: str
    user_id: str
    item_id: str
    event_type: int
    value: float | None
    text: str
    event_time: float
    ingest_time: float
    topic_id: str | None  # None: not known (yet)
    unknown_item: bool


@dataclass(frozen=True)
class StoredRow:
    seq: int
    event_id: str
    user_id: str
    item_id: str
    event_type: int
    value: float | None
    text: str
    event_time: float
    ingest_time: float
    unknown_item: bool
    topic_id: str | None


@dataclass
class UserState:
    """The derived state of one user, read for a profile."""

    event_count: int
    first_time: float
    last_time: float
    topic_counts: dict[str, int]
    transitions: dict[tuple[str, str], int]
    days: list[tuple[int, str, int]]  # (day number, topic, count), oldest first
    recent_topics: list[str]  # topics of the newest events, newest first
    last_topic: str | None


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
}
_DERIVED = ("users", "topic_counts", "topic_transitions", "topic_days")


class EventStore:
    """See the module docstring. Write methods must be called from one thread at a time."""

    def __init__(self, path: Path, durability: Literal["full", "normal"] = "full") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.synchronous = durability.upper()
        self.db = sqlite_utils.Database(self._connect())
        self.db.enable_wal()
        # The writer's page cache holds the hot part of the indexes of millions of events.
        self.db.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        self._local = threading.local()
        self.migrate()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=5
        )
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    @property
    def reader(self) -> sqlite3.Connection:
        """This thread's read connection."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    def migrate(self) -> None:
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has schema {version}; this evorec knows {SCHEMA_VERSION}"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.db.conn:
                self.db.execute("BEGIN IMMEDIATE")
                for statement in MIGRATIONS[target]:
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={target}")

    def close(self) -> None:
        self.db.conn.close()

    # Writes ----------------------------------------------------------------------------

    @retry_transient
    def write(self, events: Sequence[NewEvent]) -> tuple[list[int], list[int]]:
        """Stores new events in one transaction; returns the indexes of the accepted events
        and of the duplicates (ids already stored, or repeated earlier in `events`)."""
        connection = self.db.conn
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            stored = self._existing_ids([e.event_id for e in events])
            accepted: list[NewEvent] = []
            duplicates: list[int] = []
            for event in events:
                if event.event_id in stored:
                    duplicates.append(event.index)
                else:
                    stored.add(event.event_id)
                    accepted.append(event)
            by_user: dict[str, list[NewEvent]] = {}
            for event in accepted:
                by_user.setdefault(event.user_id, []).append(event)
            state = _Increments()
            appended: list[NewEvent] = []
            for user, user_events in by_user.items():
                appended += self._add_user_events(user, user_events, state)
            self._insert(appended)
            state.apply(connection)
        return [e.index for e in accepted], duplicates

    def _existing_ids(self, event_ids: list[str]) -> set[str]:
        found: set[str] = set()
        unique = list(dict.fromkeys(event_ids))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.db.conn.execute(
                f"SELECT event_id FROM events WHERE event_id IN ({marks})", chunk
            )
            found.update(row[0] for row in rows)
        return found

    def _insert(self, events: Iterable[NewEvent]) -> None:
        self.db.conn.executemany(
            "INSERT INTO events (event_id, user_id, item_id, event_type, value, text, event_time,"
            " ingest_time, unknown_item, topic_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (e.event_id, e.user_id, e.item_id, e.event_type, e.value, e.text, e.event_time,
                 e.ingest_time, int(e.unknown_item), e.topic_id)
                for e in events
            ],
        )  # fmt: skip

    def _neighbour_topic(self, user: str, time: float, seq: int, before: bool) -> str | None:
        """Topic of the nearest event with a topic before (or after) position (time, seq)."""
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
        row = self.db.conn.execute(sql, (user, time, time, seq)).fetchone()
        return None if row is None else str(row[0])

    def _add_user_events(
        self, user: str, events: list[NewEvent], state: _Increments
    ) -> list[NewEvent]:
        """Accounts for the user's new events in `state`. Events that land inside the stored
        history are inserted here, one by one; those after it are returned, for the caller
        to insert together with other users'."""
        events.sort(key=lambda e: (e.event_time, e.index))
        last = self.db.conn.execute(
            "SELECT event_time, topic_id FROM events WHERE user_id=?"
            " ORDER BY event_time DESC, seq DESC LIMIT 1",
            (user,),
        ).fetchone()
        in_order = last is None or events[0].event_time >= last[0]
        if in_order:
            # The common case: the new events come after everything stored. The chain of
            # topics continues from the newest stored event that has one.
            previous = None
            if last is not None:
                previous = (
                    last[1]
                    if last[1] is not None
                    else self._neighbour_topic(user, math.inf, 0, True)
                )
            for event in events:
                if event.topic_id is None:
                    continue
                if previous is not None:
                    state.transitions[(user, previous, event.topic_id)] += 1
                previous = event.topic_id
        else:
            # Some events land inside the history: place each, and rewire the transition
            # between its neighbours (pred -> succ becomes pred -> new -> succ).
            for event in events:
                self._insert([event])
                if event.topic_id is None:
                    continue
                seq = int(self.db.conn.execute("SELECT last_insert_rowid()").fetchone()[0])
                before = self._neighbour_topic(user, event.event_time, seq, True)
                after = self._neighbour_topic(user, event.event_time, seq, False)
                if before is not None and after is not None:
                    state.transitions[(user, before, after)] -= 1
                if before is not None:
                    state.transitions[(user, before, event.topic_id)] += 1
                if after is not None:
                    state.transitions[(user, event.topic_id, after)] += 1
        state.add_counts(user, events)
        return events if in_order else []

    def unresolved_items(self, limit: int) -> list[str]:
        """Items of stored events whose topic is not known yet (the catalog was unreachable)."""
        rows = self.reader.execute(
            "SELECT DISTINCT item_id FROM events"
            " WHERE topic_id IS NULL AND unknown_item = 0 LIMIT ?",
            (limit,),
        )
        return [str(row[0]) for row in rows]

    @retry_transient
    def assign_topics(self, topics: dict[str, str]) -> int:
        """Gives the events of these items, stored without a topic, their topic now, and
        brings the derived state up to date as if they had had it from the start (each one
        joins its user's chain of topics between its neighbours). Returns the events updated."""
        connection = self.db.conn
        state = _Increments()
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            marks = ",".join("?" * len(topics))
            rows = connection.execute(
                f"SELECT seq, user_id, item_id, event_time FROM events WHERE topic_id IS NULL"
                f" AND item_id IN ({marks}) ORDER BY user_id, event_time, seq",
                list(topics),
            ).fetchall()
            for seq, user, item, time in rows:
                topic = topics[item]
                before = self._neighbour_topic(user, time, seq, True)
                after = self._neighbour_topic(user, time, seq, False)
                connection.execute("UPDATE events SET topic_id=? WHERE seq=?", (topic, seq))
                if before is not None and after is not None:
                    state.transitions[(user, before, after)] -= 1
                if before is not None:
                    state.transitions[(user, before, topic)] += 1
                if after is not None:
                    state.transitions[(user, topic, after)] += 1
                state.topics[(user, topic)] += 1
                state.days[(user, int(time // DAY), topic)] += 1
            state.apply(connection)
        return len(rows)

    @retry_transient
    def delete_user(self, user_id: str) -> tuple[int, int]:
        """Removes the user's events and derived state; returns (events, state rows) removed."""
        connection = self.db.conn
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            events = connection.execute("DELETE FROM events WHERE user_id=?", (user_id,)).rowcount
            state = sum(
                connection.execute(f"DELETE FROM {table} WHERE user_id=?", (user_id,)).rowcount
                for table in _DERIVED
            )
        return events, state

    @retry_transient
    def enforce_retention(
        self, max_events: int, min_time: float | None, max_users: int = 100
    ) -> int:
        """Drops, for up to `max_users` users, the oldest events beyond `max_events` or before
        `min_time`, with their derived state; returns how many events went. One short
        transaction, so that ingest waits little."""
        connection = self.db.conn
        removed = 0
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            users = connection.execute(
                "SELECT user_id, event_count FROM users"
                " WHERE event_count > ? OR first_time < ? LIMIT ?",
                (max_events, -math.inf if min_time is None else min_time, max_users),
            ).fetchall()
            state = _Increments()
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
                chain = [r[2] for r in gone if r[2] is not None]
                first_kept = next((r[2] for r in kept if r[2] is not None), None)
                for a, b in zip(chain, [*chain[1:], first_kept], strict=True):
                    if b is not None:
                        state.transitions[(user, a, b)] -= 1
                for _, time, topic in gone:
                    if topic is not None:
                        state.topics[(user, topic)] -= 1
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

    # Reads -----------------------------------------------------------------------------

    def recent_items(self, user_id: str, limit: int) -> tuple[list[str], list[int]]:
        """The item and event type of the user's newest `limit` events, newest first."""
        rows = self.reader.execute(
            "SELECT item_id, event_type FROM events WHERE user_id=?"
            " ORDER BY event_time DESC, seq DESC LIMIT ?",
            (user_id, limit),
        ).fetchall()
        return [row[0] for row in rows], [row[1] for row in rows]

    def history(
        self,
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
        rows = self.reader.execute(
            "SELECT seq, event_id, user_id, item_id, event_type, value, text, event_time,"
            " ingest_time, unknown_item, topic_id FROM events WHERE "
            + " AND ".join(clauses)
            + " ORDER BY event_time DESC, seq DESC LIMIT ?",
            [*values, limit],
        ).fetchall()
        return [
            StoredRow(
                seq=row[0], event_id=row[1], user_id=row[2], item_id=row[3], event_type=row[4],
                value=row[5], text=row[6], event_time=row[7], ingest_time=row[8],
                unknown_item=bool(row[9]), topic_id=row[10],
            )
            for row in rows
        ]  # fmt: skip

    def user_state(self, user_id: str, recent: int) -> UserState | None:
        """The user's derived state, or None for a user with no events."""
        read = self.reader.execute
        user = read(
            "SELECT event_count, first_time, last_time FROM users WHERE user_id=?", (user_id,)
        ).fetchone()
        if user is None:
            return None
        topics = dict(
            read("SELECT topic_id, count FROM topic_counts WHERE user_id=?", (user_id,)).fetchall()
        )
        transitions = {
            (a, b): n
            for a, b, n in read(
                "SELECT from_topic, to_topic, count FROM topic_transitions WHERE user_id=?",
                (user_id,),
            )
        }
        days = read(
            "SELECT day, topic_id, count FROM topic_days WHERE user_id=? ORDER BY day", (user_id,)
        ).fetchall()
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
            days=[(int(d), str(t), int(n)) for d, t, n in days],
            recent_topics=recent_topics,
            last_topic=recent_topics[0] if recent_topics else None,
        )


class _Increments:
    """Changes to the derived tables, gathered during a transaction, applied at its end."""

    def __init__(self) -> None:
        self.topics: Counter[tuple[str, str]] = Counter()
        self.transitions: Counter[tuple[str, str, str]] = Counter()
        self.days: Counter[tuple[str, int, str]] = Counter()
        self.users: dict[str, tuple[int, float, float]] = {}

    def add_counts(self, user: str, events: Sequence[NewEvent]) -> None:
        for event in events:
            if event.topic_id is not None:
                self.topics[(user, event.topic_id)] += 1
                self.days[(user, int(event.event_time // DAY), event.topic_id)] += 1
        times = [e.event_time for e in events]
        self.users[user] = (len(events), min(times), max(times))

    def apply(self, connection: sqlite3.Connection) -> None:
        upsert = "ON CONFLICT DO UPDATE SET count = count + excluded.count"
        connection.executemany(
            f"INSERT INTO topic_counts VALUES (?,?,?) {upsert}",
            [(*k, n) for k, n in self.topics.items() if n],
        )
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
            ("topic_counts", self.topics, "user_id=? AND topic_id=?"),
            ("topic_transitions", self.transitions, "user_id=? AND from_topic=? AND to_topic=?"),
            ("topic_days", self.days, "user_id=? AND day=? AND topic_id=?"),
        ):
            lowered = [key for key, n in keys.items() if n < 0]
            connection.executemany(f"DELETE FROM {table} WHERE {columns} AND count <= 0", lowered)
