"""A circuit breaker: stop waiting on a dependency that keeps failing, and try it again by
sending one request at a time.

Closed, every call goes through. After `failures_to_open` failures in a row it opens: calls
are refused at once (the caller answers without the dependency) for `open_s` seconds. Then it
is half-open: exactly one call, the probe, goes through while the others are still refused;
the probe's success closes the breaker, its failure opens it for another `open_s`.

Why not a library's: the ones on PyPI (purgatory, aiobreaker, pybreaker) let every call
through while half-open. Against a model server that hangs (paused, or loading its model),
that makes every request that arrives during the probe wait its whole share of the deadline
and then all of them answer at once, late: measured with scripts/faults_under_load.py, the
single probe is what keeps those calls within their deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """The state of one dependency's breaker; not thread-safe (one event loop's)."""

    def __init__(
        self,
        failures_to_open: int,
        open_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures_to_open < 1 or open_s <= 0:
            raise ValueError("failures_to_open must be >= 1 and open_s > 0")
        self.failures_to_open = failures_to_open
        self.open_s = open_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def is_open(self) -> bool:
        """Whether calls are refused now (open, or half-open with its probe in flight)."""
        if self.opened_at is None:
            return False
        return self.probing or self.clock() < self.opened_at + self.open_s

    def allow(self) -> bool:
        """Whether a call may go through now; when it is the probe, the caller must report
        its outcome with `record`."""
        if self.is_open:
            return False
        if self.opened_at is not None:
            self.probing = True
        return True

    def record(self, succeeded: bool | None) -> None:
        """The outcome of a call `allow` let through: True a success, False a failure of the
        dependency, None neither (the caller gave up, or the error was not the dependency's)."""
        self.probing = False
        if succeeded is None:
            return
        if succeeded:
            self.failures = 0
            self.opened_at = None
            return
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.failures_to_open:
            self.opened_at = self.clock()
