"""The durable event store of the interest service: one SQLite file in WAL mode (tables in
`schema`, derived state in `derived`, reads in `reads`, retention and topic back-fill in
their own modules; this class owns the connections and the write path).

Durability: WAL with `synchronous=FULL` (the default) fsyncs each commit, so an event
acknowledged to a caller survives `kill -9` and a power cut; `normal` survives `kill -9`
only. Writes happen on one thread (the caller's writer), reads on any thread, each with its
own connection; WAL lets reads run while a write commits. Transient SQLite errors ("database
is locked" from another process, for one) are retried with tenacity, a bounded number of
times.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import sqlite_utils
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from evorec.interest import backfill, reads, retention
from evorec.interest.checkpoints import BACKSTOP_PAGES, WalCheckpointer
from evorec.interest.derived import DerivedChanges, last_topic, neighbour_topic
from evorec.interest.records import NewEvent, StoredRow, UserState
from evorec.interest.schema import DERIVED_TABLES, migrate
from evorec.interest.tails import Tail, TailCache

log = logging.getLogger("evorec.interest")
_CHUNK = 900  # SQLite variables per statement, well under its limit
WRITER_CACHE_KIB = 65_536
TAIL_USERS = 10_000  # users whose newest event one statement reads


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
        self.db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        self.checkpoints = WalCheckpointer(self._connect)
        self.tails = TailCache()
        self._local = threading.local()
        migrate(self.db, path)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=5
        )
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        connection.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten with zeros, not left in free pages (DeleteUser).
        connection.execute("PRAGMA secure_delete=ON")
        return connection

    @property
    def reader(self) -> sqlite3.Connection:
        """This thread's read connection."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    def close(self) -> None:
        self.checkpoints.stop()
        self.db.conn.close()

    # Writes ----------------------------------------------------------------------------

    @retry_transient
    def write(self, events: Sequence[NewEvent]) -> tuple[list[int], list[int]]:
        """Stores new events in one transaction; returns the indexes of the accepted events
        and of the duplicates (ids already stored, or repeated earlier in `events`).

        The work per statement, not per event, is what a group of thousands of events
        costs: the newest stored event of every user in the group is read by one statement
        (`_tails`), the rows are inserted by one, and each derived table is updated by one."""
        connection = self.db.conn
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            self.tails.check(connection.execute("PRAGMA data_version").fetchone()[0])
            stored = self._existing_ids([e.event_id for e in events])
            accepted: list[int] = []
            duplicates: list[int] = []
            by_user: dict[str, list[NewEvent]] = {}
            for event in events:
                if event.event_id in stored:
                    duplicates.append(event.index)
                    continue
                stored.add(event.event_id)
                accepted.append(event.index)
                user_events = by_user.get(event.user_id)
                if user_events is None:
                    by_user[event.user_id] = [event]
                else:
                    user_events.append(event)
            tails = self._tails(list(by_user))
            state = DerivedChanges()
            appended: list[NewEvent] = []
            newest: dict[str, Tail | None] = {}  # None: the user's events landed inside
            for user, user_events in by_user.items():
                added = self._add_user_events(user, user_events, tails.get(user), state)
                appended += added
                newest[user] = (added[-1].event_time, added[-1].topic_id) if added else None
            self._insert(appended)
            state.apply(connection)
        for user, tail in newest.items():  # committed: the cache may follow
            if tail is None:
                self.tails.forget(user)
            else:
                self.tails.put(user, tail)
        self.checkpoints.requested()
        return accepted, duplicates

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

    def _tails(self, users: list[str]) -> dict[str, Tail]:
        """(time, topic) of each user's newest stored event, for the users that have one:
        from the cache (`tails`), else read, one statement per TAIL_USERS users rather than
        one per user."""
        tails: dict[str, Tail] = {}
        unknown: list[str] = []
        for user in users:
            tail = self.tails.get(user)
            if tail is None:
                unknown.append(user)
            else:
                tails[user] = tail
        for start in range(0, len(unknown), TAIL_USERS):
            rows = self.db.conn.execute(
                "SELECT e.user_id, e.event_time, e.topic_id FROM json_each(?) AS wanted"
                " JOIN events AS e ON e.seq = (SELECT seq FROM events"
                "  WHERE user_id = wanted.value ORDER BY event_time DESC, seq DESC LIMIT 1)",
                (json.dumps(unknown[start : start + TAIL_USERS]),),
            )
            tails.update((user, (time, topic)) for user, time, topic in rows)
        return tails

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
        return neighbour_topic(self.db.conn, user, time, seq, before)

    def _add_user_events(
        self,
        user: str,
        events: list[NewEvent],
        tail: tuple[float, str | None] | None,
        state: DerivedChanges,
    ) -> list[NewEvent]:
        """Accounts for the user's new events in `state`, given `tail`, the (time, topic) of
        the user's newest stored event (None: the user has none). Events that land inside
        the stored history are inserted here, one by one; those after it are returned, for
        the caller to insert together with other users'."""
        if len(events) > 1:
            events.sort(key=lambda e: (e.event_time, e.index))
        if tail is None or events[0].event_time >= tail[0]:
            # The common case: the new events come after everything stored. The chain of
            # topics continues from the newest stored event that has one.
            previous = None
            if tail is not None:
                previous = tail[1] if tail[1] is not None else last_topic(self.db.conn, user)
            state.append(user, previous, events)
            return events
        # Some events land inside the history: place each, and rewire the transition
        # between its neighbours (pred -> succ becomes pred -> new -> succ).
        for event in events:
            self._insert([event])
            if event.topic_id is None:
                continue
            seq = int(self.db.conn.execute("SELECT last_insert_rowid()").fetchone()[0])
            before = self._neighbour_topic(user, event.event_time, seq, True)
            after = self._neighbour_topic(user, event.event_time, seq, False)
            state.join_chain(user, before, event.topic_id, after)
        state.add_counts(user, events)
        return []

    @retry_transient
    def delete_user(self, user_id: str) -> tuple[int, int]:
        """Removes the user's events and derived state; returns (events, state rows) removed.

        No byte of them stays behind: secure_delete zeroes the rows in the pages, and a
        checkpoint moves the pages into the database file and truncates the WAL, whose
        older frames still held the rows as they were written."""
        self.tails.forget(user_id)
        connection = self.db.conn
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            events = connection.execute("DELETE FROM events WHERE user_id=?", (user_id,)).rowcount
            state = sum(
                connection.execute(f"DELETE FROM {table} WHERE user_id=?", (user_id,)).rowcount
                for table in DERIVED_TABLES
            )
        with self.checkpoints.exclusive:
            busy = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            log.warning("a reader kept the WAL from being truncated after deleting a user")
        return events, state

    # Topic back-fill, retention and reads live in their own modules -------------------

    def unresolved_items(self, limit: int, after: str = "") -> list[str]:
        return backfill.unresolved_items(self.reader, limit, after)

    @retry_transient
    def assign_topics(self, topics: dict[str, str]) -> int:
        assigned = backfill.assign_topics(self.db.conn, topics)
        if assigned:
            self.tails.clear()  # the newest events' topics may be among those filled in
            self.checkpoints.requested()
        return assigned

    @retry_transient
    def enforce_retention(
        self, max_events: int, min_time: float | None, max_users: int = 100
    ) -> int:
        removed = retention.enforce_retention(self.db.conn, max_events, min_time, max_users)
        if removed:
            self.tails.clear()  # a user's newest events may be among those removed
            self.checkpoints.requested()
        return removed

    def recent_items(self, user_id: str, limit: int) -> tuple[list[str], list[int]]:
        return reads.recent_items(self.reader, user_id, limit)

    def history(
        self,
        user_id: str,
        limit: int,
        start_time: float | None = None,
        end_time: float | None = None,
        before: tuple[float, int] | None = None,
    ) -> list[StoredRow]:
        return reads.history(self.reader, user_id, limit, start_time, end_time, before)

    def user_state(self, user_id: str, recent: int) -> UserState | None:
        return reads.user_state(self.reader, user_id, recent)

    def log_position(self) -> int:
        return reads.log_position(self.reader)

    def export_page(
        self, after_seq: int, up_to_seq: int, limit: int, after: tuple[float, int] | None = None
    ) -> list[StoredRow]:
        return reads.export_page(self.reader, after_seq, up_to_seq, limit, after)
