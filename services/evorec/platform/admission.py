"""Admission: how many calls a server works on at once, and which waiting calls it sheds.

Why: an asyncio server that starts every call as it arrives shares its one thread among all
of them; offered more than it can do, each call takes longer than its deadline, the work
spent on it is lost, and almost nothing is answered (goodput collapse). And when the load
drops, the backlog still stands before the new calls, so the service recovers only after it.

So a server keeps at most `max_in_progress` unary calls in progress; the others wait, at most
`max_waiting` of them (beyond: RESOURCE_EXHAUSTED at once). A waiting call is refused with
RESOURCE_EXHAUSTED, at once and cheaply, when it could no longer be answered in time: when
what is left of its deadline falls below the typical time its method takes once started
(an exponentially weighted mean of the last calls'). The order is adaptive LIFO: while the
oldest waiting call has waited less than that typical time, calls start in arrival order;
once it has waited longer (the server is behind), the newest start first, so that fresh calls
meet no backlog and the stale ones are shed. A call that finds a free slot always starts:
an idle server refuses nothing, however short the deadline.

And the queue's delay is controlled (CoDel, as Facebook's "Fail at scale" applies it to
request queues): once calls have waited without a break for `queue_interval_s` (a standing
queue, not a burst), a call that has waited longer than `queue_target_s` (or than its
method's typical time, up to the interval, where that is longer: the slots of a server that
answers in batches free a batch at a time, and a call that waited less than one batch is not
late) is shed when a slot frees, instead of started, unless its caller gave no deadline (and
so asked to wait). Without this, the calls that waited through an overload take the slots
one after another once the load drops, and the fresh calls share the event loop with a full
set of them. While it sheds, the server also keeps to `standing_in_progress` calls in
progress (those above it finish first; only a shed starts this, not a queue that stands but
keeps moving): fewer calls share the event loop, which then takes arriving calls from gRPC
core about as fast as they come, so that core's own queue (first in first out, out of
admission's sight) stays short, and when the load drops there is almost nothing before the
fresh calls. The first release that finds no call to shed, and no more calls waiting than
`standing_in_progress`, ends the control (the load has dropped): the waiting calls start at
once, up to `max_in_progress`; so does a queue left empty, by shedding or by its callers
leaving. The costs: under overload the server answers fewer calls than
it could with all its slots, and a client that keeps more calls in flight than
`max_in_progress`, with deadlines, has the excess refused once the queue stands, even while
the server keeps up.

Streams are not admitted here (a stream would hold a slot for its whole life), nor are
health checks and reflection.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from evorec.platform import context
from evorec.platform.errors import ResourceExhausted

# Weight of the newest call in a method's typical time: about the last 20 calls count.
TYPICAL_WEIGHT = 0.1
# The oldest waiting call counts as behind after at least this long, even for a method
# whose calls are quicker (so that a queue of very quick calls does not flap into LIFO).
MIN_BEHIND_S = 0.005


@dataclass
class _Waiting:
    """A call waiting for a slot; `granted` is set when a finishing call hands it its slot
    (True) or sheds it (False: it waited too long in a standing queue)."""

    since: float
    typical_s: float
    # Whether the caller gave a deadline: one that gave none asked to wait, and is never
    # shed for its delay.
    has_deadline: bool
    granted: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def late_after(self, target_s: float, interval_s: float) -> float:
        """How long it may wait behind a standing queue: the target, or its method's typical
        time where that is longer (up to the interval): a server that answers in batches
        frees its slots a batch at a time, so a fresh call may wait that long behind a
        queue that is going."""
        return max(target_s, min(self.typical_s, interval_s))

    def stale(self, now: float, target_s: float, interval_s: float) -> bool:
        return now - self.since > self.late_after(target_s, interval_s)


class Admission:
    """The admission of one server's unary calls; see the module docstring."""

    def __init__(
        self,
        max_in_progress: int,
        max_waiting: int,
        queue_target_s: float,
        queue_interval_s: float,
        standing_in_progress: int | None = None,
    ) -> None:
        self.max_in_progress = max_in_progress
        self.standing_in_progress = min(standing_in_progress or max_in_progress, max_in_progress)
        self.max_waiting = max_waiting
        self.queue_target_s = queue_target_s
        self.queue_interval_s = queue_interval_s
        self.in_progress = 0
        self.waiting: deque[_Waiting] = deque()
        # Until when no call waited: the moment the first call of the present queue came.
        self.empty_until = time.monotonic()
        # Whether calls are being shed from a standing queue: then at most
        # `standing_in_progress` calls are in progress (the calls above it finish first).
        self.controlled = False
        self.typical_s: dict[str, float] = {}

    @asynccontextmanager
    async def slot(self, method: str) -> AsyncIterator[None]:
        """Holds one of the slots while the call runs; raises ResourceExhausted (`.reason`:
        "deadline", "queue" or "delay") when the call is shed instead."""
        if self.in_progress < self._limit() and not self.waiting:
            self.in_progress += 1
        else:
            await self._wait(method)
        started = time.monotonic()
        answered = False
        try:
            yield
            answered = True
        finally:
            self._release()
            if answered:
                took = time.monotonic() - started
                before = self.typical_s.get(method)
                self.typical_s[method] = (
                    took if before is None else before + TYPICAL_WEIGHT * (took - before)
                )

    async def _wait(self, method: str) -> None:
        if len(self.waiting) >= self.max_waiting:
            raise Shed("queue", f"{self.max_waiting} calls are already waiting: retry later")
        typical = self.typical_s.get(method, 0.0)
        remaining = context.remaining_seconds()
        if remaining is not None and remaining <= typical:
            raise Shed("deadline", _too_late(remaining, typical))
        waiting = _Waiting(time.monotonic(), typical, remaining is not None)
        if not self.waiting:
            self.empty_until = waiting.since
        self.waiting.append(waiting)
        try:
            async with asyncio.timeout(None if remaining is None else remaining - typical):
                granted = await asyncio.shield(waiting.granted)
        except BaseException as error:  # timed out, or the caller went away
            if waiting.granted.done():
                if waiting.granted.result():  # the slot came at the same moment: give it on
                    self._release()
            else:
                self.waiting.remove(waiting)
                waiting.granted.cancel()
                if not self.waiting:  # emptied by callers leaving: no queue left to control
                    self.controlled = False
            if isinstance(error, TimeoutError):
                left = context.remaining_seconds() or 0.0
                raise Shed("deadline", _too_late(left, typical)) from None
            raise
        if not granted:
            waited = time.monotonic() - waiting.since
            late = waiting.late_after(self.queue_target_s, self.queue_interval_s)
            raise Shed(
                "delay",
                f"overloaded: waited {waited * 1000:.0f} ms for a slot behind a standing "
                f"queue (at most {late * 1000:.0f} ms there): retry later",
            )

    def _release(self) -> None:
        """Frees the slot of a finished call and hands free slots to waiting calls (adaptive
        LIFO); first, behind a standing queue, sheds the calls that waited too long
        (controlled delay), and while it sheds, keeps to `standing_in_progress`."""
        now = time.monotonic()
        self.in_progress -= 1
        if not self.waiting:
            self.controlled = False
        elif self.controlled or now - self.empty_until > self.queue_interval_s:
            # Only a shed starts the control (a queue that stands but keeps moving is not
            # an overload); a release that finds no call to shed, and no more calls
            # waiting than the bound lets run, ends it: the load has dropped. (Under
            # overload, the calls that came within one target outnumber the bound.)
            shed = self._shed_stale(now)
            self.controlled = bool(self.waiting) and (
                shed > 0 or (self.controlled and len(self.waiting) > self.standing_in_progress)
            )
        while self.waiting and self.in_progress < self._limit():
            oldest = self.waiting[0]
            behind = now - oldest.since > max(oldest.typical_s, MIN_BEHIND_S)
            chosen = self.waiting.pop() if behind else self.waiting.popleft()
            chosen.granted.set_result(True)
            self.in_progress += 1

    def _limit(self) -> int:
        return self.standing_in_progress if self.controlled else self.max_in_progress

    def _shed_stale(self, now: float) -> int:
        """Sheds the waiting calls past their target that gave a deadline; how many."""
        # The queue is in arrival order, so the calls past their target are its head (but
        # for a quicker method's call behind a slower one's, shed at a later release): only
        # they are looked at, not the whole queue on every release.
        patient: list[_Waiting] = []
        shed = 0
        while self.waiting and self.waiting[0].stale(
            now, self.queue_target_s, self.queue_interval_s
        ):
            stale = self.waiting.popleft()
            if stale.has_deadline:
                stale.granted.set_result(False)
                shed += 1
            else:
                patient.append(stale)
        self.waiting.extendleft(reversed(patient))
        return shed


class Shed(ResourceExhausted):
    """A call admission refused: `reason` is "queue" (too many waiting), "deadline" (it
    could not be answered in time) or "delay" (it waited too long in a standing queue)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _too_late(remaining: float, typical: float) -> str:
    return (
        f"overloaded: {max(remaining, 0.0) * 1000:.0f} ms left of the deadline, and a call "
        f"takes about {typical * 1000:.0f} ms once started: retry later"
    )
