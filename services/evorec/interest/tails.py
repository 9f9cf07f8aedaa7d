"""The newest stored event of each recently written user, as the writer last left it.

Every write needs, for each of its users, the time and topic of the user's newest stored
event: to tell events that come after the history (the common case) from late ones, and to
go on with the user's chain of topics. Read from the database that is an index seek and a
row per user, a visible share of the writer's time at full ingest (BENCHMARKS.md, "Ingest,
second step"). The writer changes the events, so it can keep what it wrote instead:

- after a commit, each user it appended to has its newest event in the cache; a user whose
  events landed inside the history, whose events were deleted, or whose topics were filled
  in afterwards is forgotten (the next write reads it again);
- a commit by any other connection (another process on the same file) changes SQLite's
  `PRAGMA data_version`; the writer compares it at the start of every write and empties
  the cache when it moved, so the cache never outlives a change it did not make.
"""

from __future__ import annotations

from collections import OrderedDict

Tail = tuple[float, str | None]  # (time, topic) of a user's newest stored event
MAX_USERS = 100_000


class TailCache:
    """See the module docstring. At most `max_users` users, the least recently written
    forgotten first."""

    def __init__(self, max_users: int = MAX_USERS) -> None:
        self.max_users = max_users
        # Ordered: evicting the oldest of a plain dict walks the slots its deletions left.
        self._tails: OrderedDict[str, Tail] = OrderedDict()
        self._data_version: int | None = None

    def get(self, user: str) -> Tail | None:
        return self._tails.get(user)

    def put(self, user: str, tail: Tail) -> None:
        tails = self._tails
        tails[user] = tail
        tails.move_to_end(user)
        if len(tails) > self.max_users:
            tails.popitem(last=False)

    def forget(self, user: str) -> None:
        self._tails.pop(user, None)

    def clear(self) -> None:
        self._tails.clear()

    def check(self, data_version: int) -> None:
        """Empties the cache when another connection committed since the last check."""
        if data_version != self._data_version:
            self._tails.clear()
            self._data_version = data_version

    def __len__(self) -> int:
        return len(self._tails)
