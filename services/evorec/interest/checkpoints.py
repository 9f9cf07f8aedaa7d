"""WAL checkpoints of the event store, on a thread of their own.

In WAL mode every commit appends pages to the write-ahead log, and a checkpoint copies them
into the database file. SQLite's automatic checkpoint runs inside the commit that passes
1,000 pages, on the committing thread: for the interest service that is the single writer,
which then stops taking events for the length of the copy. Here the copy runs on a thread
of its own, with its own connection, after commits and at most every `min_interval_s`;
SQLite releases the GIL while it copies, so it runs beside the writer, on another core
(what that gains: BENCHMARKS.md, "Ingest, second step").

A PASSIVE checkpoint never waits for the writer or the readers and changes no data, so
durability is that of the commits (each fsynced to the log before it is acknowledged). The
writer keeps SQLite's automatic checkpoint with a higher threshold, `BACKSTOP_PAGES`, in case
this thread falls behind; and `exclusive` lets a caller run its own checkpoint (a TRUNCATE
after deleting a user) without meeting this one.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("evorec.interest")
BACKSTOP_PAGES = 16_000  # 62.5 MiB of 4 KiB pages: the writer checkpoints only past this


class WalCheckpointer:
    """See the module docstring. `requested` after each commit; `stop` at the end."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], min_interval_s: float = 0.1
    ) -> None:
        self.connect = connect
        self.min_interval_s = min_interval_s
        self.exclusive = threading.Lock()
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def requested(self) -> None:
        """Asks for a checkpoint soon (starting the thread when it is not running). Never
        raises: it is called after commits, and the writer's backstop covers a lost thread."""
        self._wanted.set()
        if self._thread is None or not self._thread.is_alive():
            thread = threading.Thread(target=self._run, name="evorec-checkpoints", daemon=True)
            try:
                thread.start()
            except RuntimeError as error:
                log.warning("cannot start the WAL checkpoint thread: %s", error)
                return
            self._thread = thread

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._wanted.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        try:
            connection = self.connect()
        except sqlite3.Error as error:  # the next commit starts the thread again
            log.warning("cannot open a connection for WAL checkpoints: %s", error)
            return
        try:
            while True:
                self._wanted.wait()
                if self._stopping.is_set():
                    return
                self._wanted.clear()
                try:
                    with self.exclusive:
                        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as error:  # the next commit asks again
                    log.warning("WAL checkpoint failed: %s", error)
                if self._stopping.wait(self.min_interval_s):
                    return
        finally:
            connection.close()
