"""Stopping a long-running command with Ctrl-C or SIGTERM, however it was started."""

from __future__ import annotations

import signal
from types import FrameType


def raise_on_stop_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, whatever this process inherited: a shell
    starts a background job with SIGINT ignored, and Python then installs no handler of its
    own, so without this such a job would not stop on SIGINT."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
