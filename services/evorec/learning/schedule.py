"""`evorec retrain --every DURATION`: retrain on a fixed period, on the embedded default.

Runs are spaced from the start of one to the start of the next (a run longer than the period
is followed at once by the next, never overlapped: the loop is sequential, and the retrain's
own lock keeps a second loop or a manual `evorec retrain` on the same data directory from
running beside it). A failed run is reported and the loop goes on: a service that is down
now may be back at the next turn.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """Seconds in `1h30m`, `45m`, `6h`, `1d`, `90s` (or a plain number of seconds)."""
    cleaned = text.strip().lower()
    try:
        seconds = float(cleaned)
    except ValueError:
        parts = _PART.findall(cleaned)
        if not parts or "".join(n + u for n, u in parts) != cleaned:
            raise ValueError(
                f"not a duration: {text!r} (use e.g. 90s, 30m, 6h, 1d, 1h30m)"
            ) from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, not {text!r}")
    return seconds


def every(
    period_s: float,
    run: Callable[[], None],
    runs: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Calls `run` every `period_s` seconds (start to start), `runs` times or until
    interrupted; returns how many runs were made."""
    made = 0
    while runs is None or made < runs:
        started = time.monotonic()
        run()
        made += 1
        if runs is None or made < runs:
            sleep(max(0.0, started + period_s - time.monotonic()))
    return made
