"""One retrain (or live snapshot) at a time per data directory: an exclusive lock on a file,
held for the run.

`flock` is released by the kernel when the holder dies, so a crashed retrain never leaves a
stale lock behind; the holder's pid is written in the file for the message of the next one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Busy(RuntimeError):
    """Another retrain or snapshot holds the lock."""


def learning_lock(data_dir: Path) -> Path:
    """The lock that `evorec retrain` and `evorec data snapshot` hold while they write under
    `data_dir` (live datasets, candidates, reports)."""
    return data_dir / "retrain" / "lock"


@contextmanager
def exclusive(path: Path, wait: bool = False) -> Iterator[None]:
    """Holds the lock at `path` for the block; raises Busy when another process holds it
    (or, with `wait`, blocks until it is free)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as error:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise Busy(
                f"a retrain or snapshot is already running (pid {holder}; lock {path})"
            ) from error
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
