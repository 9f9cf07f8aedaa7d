"""Admission (evorec.platform.admission): slots, the bounded queue, shedding of calls that
can no longer be answered in time, and the adaptive LIFO order."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from evorec.platform import context
from evorec.platform.admission import Admission, Shed


def without_delay_control(max_in_progress: int, max_waiting: int) -> Admission:
    """Admission whose queue is never standing long enough for its delay to be controlled."""
    return Admission(max_in_progress, max_waiting, queue_target_s=60.0, queue_interval_s=60.0)


async def hold(admission: Admission, release: asyncio.Event, method: str = "M") -> None:
    async with admission.slot(method):
        await release.wait()


async def with_deadline(seconds: float | None, admission: Admission, log: list[str], name: str):
    """Takes a slot as a call with `seconds` left of its deadline; logs when it starts."""
    context.deadline.set(None if seconds is None else time.monotonic() + seconds)
    async with admission.slot("M"):
        log.append(name)


async def teach_typical(admission: Admission, seconds: float) -> None:
    """One answered call of `seconds`: the method's typical time becomes that."""
    async with admission.slot("M"):
        await asyncio.sleep(seconds)


async def test_an_idle_server_admits_a_call_however_short_its_deadline() -> None:
    admission = without_delay_control(1, 0)
    await teach_typical(admission, 0.05)
    log: list[str] = []
    await with_deadline(0.001, admission, log, "short")
    assert log == ["short"]
    assert admission.in_progress == 0


async def test_a_call_beyond_the_slots_waits_and_starts_when_one_frees() -> None:
    admission = without_delay_control(1, 10)
    release = asyncio.Event()
    first = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    log: list[str] = []
    second = asyncio.create_task(with_deadline(None, admission, log, "second"))
    await asyncio.sleep(0.01)
    assert log == []
    assert len(admission.waiting) == 1
    release.set()
    await asyncio.gather(first, second)
    assert log == ["second"]
    assert admission.in_progress == 0
    assert not admission.waiting


async def test_a_full_queue_refuses_at_once() -> None:
    admission = without_delay_control(1, 1)
    release = asyncio.Event()
    first = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    with pytest.raises(Shed) as refused:
        await with_deadline(None, admission, [], "third")
    assert refused.value.reason == "queue"
    release.set()
    await asyncio.gather(first, waiting)
    assert admission.in_progress == 0


async def test_a_waiting_call_is_shed_once_it_could_not_finish_in_time() -> None:
    admission = without_delay_control(1, 10)
    await teach_typical(admission, 0.4)
    typical = admission.typical_s["M"]
    release = asyncio.Event()
    first = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(Shed) as refused:
        await with_deadline(1.0, admission, [], "late")
    waited = time.monotonic() - started
    # Shed when what is left (1 s - waited) reaches the typical time (about 0.6 s in), well
    # before the deadline itself.
    assert refused.value.reason == "deadline"
    assert 1.0 - typical - 0.01 <= waited < 0.9
    assert not admission.waiting
    release.set()
    await first
    assert admission.in_progress == 0


async def test_a_call_left_less_than_the_typical_time_is_shed_without_waiting() -> None:
    admission = without_delay_control(1, 10)
    await teach_typical(admission, 0.1)
    release = asyncio.Event()
    first = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(Shed, match="overloaded"):
        await with_deadline(0.05, admission, [], "late")
    assert time.monotonic() - started < 0.02
    release.set()
    await first


async def test_in_arrival_order_while_on_time_newest_first_once_behind() -> None:
    admission = without_delay_control(1, 10)
    await teach_typical(admission, 0.2)
    log: list[str] = []

    async def run_while_three_wait(pause_s: float) -> list[str]:
        log.clear()
        release = asyncio.Event()
        first = asyncio.create_task(hold(admission, release))
        await asyncio.sleep(0)
        waiting = []
        for name in ("a", "b", "c"):
            waiting.append(asyncio.create_task(with_deadline(None, admission, log, name)))
            await asyncio.sleep(0)
        await asyncio.sleep(pause_s)
        release.set()
        await asyncio.gather(first, *waiting)
        return list(log)

    assert await run_while_three_wait(0.0) == ["a", "b", "c"]
    # The oldest has now waited longer than the method's typical time: the newest goes first.
    assert (await run_while_three_wait(0.3))[0] == "c"
    assert admission.in_progress == 0


async def test_a_waiting_call_cancelled_by_its_caller_leaves_the_queue() -> None:
    admission = without_delay_control(1, 10)
    release = asyncio.Event()
    first = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    gone = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    assert len(admission.waiting) == 1
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert not admission.waiting
    release.set()
    await first
    assert admission.in_progress == 0
    log: list[str] = []
    await with_deadline(None, admission, log, "next")
    assert log == ["next"]


async def start_or_shed(
    admission: Admission, log: list[str], name: str, deadline_s: float | None = 10.0
) -> None:
    """Takes a slot as a call with `deadline_s` left; logs its name, or "NAME shed: REASON"."""
    try:
        await with_deadline(deadline_s, admission, log, name)
    except Shed as shed:
        log.append(f"{name} shed: {shed.reason}")


async def queue_behind_one_call(
    admission: Admission, stand_s: float, b_deadline_s: float | None = 10.0
) -> list[str]:
    """Calls a and b wait behind a call holding the only slot for `stand_s`; then c comes,
    and the slot frees. What each of a, b and c got, in order."""
    log: list[str] = []
    release = asyncio.Event()
    first = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    waiting = [
        asyncio.create_task(start_or_shed(admission, log, "a")),
        asyncio.create_task(start_or_shed(admission, log, "b", b_deadline_s)),
    ]
    await asyncio.sleep(stand_s)
    waiting.append(asyncio.create_task(start_or_shed(admission, log, "c")))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *waiting)
    assert admission.in_progress == 0
    assert not admission.waiting
    return log


async def test_a_standing_queue_sheds_the_calls_that_waited_beyond_the_target() -> None:
    admission = Admission(1, 10, queue_target_s=0.01, queue_interval_s=0.05)
    # The queue stood 0.1 s (beyond the interval): a and b waited beyond the target and are
    # shed when the slot frees; c, just come, starts.
    assert await queue_behind_one_call(admission, 0.1) == ["a shed: delay", "b shed: delay", "c"]


async def test_a_call_without_a_deadline_is_never_shed_for_its_delay() -> None:
    admission = Admission(1, 10, queue_target_s=0.01, queue_interval_s=0.05)
    log = await queue_behind_one_call(admission, 0.1, b_deadline_s=None)
    assert log == ["a shed: delay", "c", "b"]


async def test_a_queue_that_stood_less_than_the_interval_sheds_none() -> None:
    admission = Admission(1, 10, queue_target_s=0.01, queue_interval_s=0.5)
    # a and b waited beyond the target, but the queue is younger than the interval (a burst).
    assert sorted(await queue_behind_one_call(admission, 0.1)) == ["a", "b", "c"]


async def test_a_call_shed_for_its_delay_is_resource_exhausted_and_says_why() -> None:
    admission = Admission(1, 10, queue_target_s=0.0, queue_interval_s=0.01)
    release = asyncio.Event()
    first = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    late = asyncio.create_task(with_deadline(10.0, admission, [], "late"))
    await asyncio.sleep(0.05)
    release.set()
    await first
    with pytest.raises(Shed, match="behind a standing queue") as refused:
        await late
    assert refused.value.reason == "delay"
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert admission.in_progress == 0


async def arrivals_behind_one_call(admission: Admission, gaps_s: list[float]) -> list[str]:
    """Calls a, b, ... come behind a call holding the only slot, each after the gap before
    it (the last gap passes before the slot frees). What each got, in order."""
    log: list[str] = []
    release = asyncio.Event()
    first = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    calls = []
    for name, gap in zip("abcdefgh", gaps_s[:-1], strict=False):
        await asyncio.sleep(gap)
        calls.append(asyncio.create_task(start_or_shed(admission, log, name)))
    await asyncio.sleep(gaps_s[-1])
    release.set()
    await asyncio.gather(first, *calls)
    return log


async def test_behind_a_standing_queue_a_call_is_late_past_its_methods_typical_time() -> None:
    admission = Admission(1, 10, queue_target_s=0.005, queue_interval_s=0.3)
    await teach_typical(admission, 0.1)
    # The queue stood past the interval (0.3 s). A call of this method takes 0.1 s once
    # started, and slots free no faster: a and b waited longer (0.35 and 0.2 s) and are
    # shed; c waited past the target but less than that, so it is fresh.
    log = await arrivals_behind_one_call(admission, [0.0, 0.15, 0.18, 0.02])
    assert log == ["a shed: delay", "b shed: delay", "c"]


async def test_a_methods_typical_time_counts_up_to_the_interval() -> None:
    admission = Admission(1, 10, queue_target_s=0.01, queue_interval_s=0.05)
    await teach_typical(admission, 0.2)
    # A call takes 0.2 s, but a waited past the interval (0.05 s): late; b waited past the
    # target but not the interval: fresh.
    assert await arrivals_behind_one_call(admission, [0.0, 0.08, 0.03]) == ["a shed: delay", "b"]


async def test_a_queue_that_stands_but_sheds_nothing_keeps_all_its_slots() -> None:
    admission = Admission(2, 10, queue_target_s=60.0, queue_interval_s=0.05, standing_in_progress=1)
    releases = [asyncio.Event() for _ in range(2)]
    holders = [asyncio.create_task(hold(admission, release)) for release in releases]
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(hold(admission, asyncio.Event())) for _ in range(3)]
    await asyncio.sleep(0.1)  # stands, more calls than the bound wait, none is late
    releases[0].set()
    await holders[0]
    assert admission.in_progress == 2  # a waiting call took the freed slot
    releases[1].set()
    for task in waiting:
        task.cancel()
    await asyncio.gather(holders[1], *waiting, return_exceptions=True)
    assert admission.in_progress == 0


async def test_a_queue_emptied_by_shedding_ends_the_control() -> None:
    admission = Admission(2, 10, queue_target_s=0.01, queue_interval_s=0.05, standing_in_progress=1)
    releases = [asyncio.Event() for _ in range(2)]
    holders = [asyncio.create_task(hold(admission, release)) for release in releases]
    await asyncio.sleep(0)
    log: list[str] = []
    late = [asyncio.create_task(start_or_shed(admission, log, name)) for name in "ab"]
    await asyncio.sleep(0.1)
    releases[0].set()
    await asyncio.gather(holders[0], *late)
    assert log == ["a shed: delay", "b shed: delay"]
    # Nothing waits any more: a call that comes now takes the free slot at once, though
    # one call is still in progress (the bound while shedding is 1).
    await asyncio.wait_for(with_deadline(10.0, admission, log, "next"), timeout=1.0)
    assert log[-1] == "next"
    releases[1].set()
    await holders[1]
    assert admission.in_progress == 0


async def shed_behind_three_calls(
    fresh_calls: int,
) -> tuple[Admission, list[asyncio.Event], list[asyncio.Task[None]], list[asyncio.Task[None]]]:
    """Three slots (two while shedding) held; a call "old" waits past the target, then
    `fresh_calls` calls come; the first slot is released, which sheds "old" and turns the
    control on. The admission, the held calls' releases and tasks, and the fresh calls."""
    admission = Admission(3, 10, queue_target_s=0.01, queue_interval_s=0.05, standing_in_progress=2)
    releases = [asyncio.Event() for _ in range(3)]
    holders = [asyncio.create_task(hold(admission, release)) for release in releases]
    await asyncio.sleep(0)
    log: list[str] = []
    old = asyncio.create_task(start_or_shed(admission, log, "old"))
    await asyncio.sleep(0.1)  # the queue stands, and "old" waited past the target
    fresh = [asyncio.create_task(hold(admission, asyncio.Event())) for _ in range(fresh_calls)]
    await asyncio.sleep(0)
    releases[0].set()
    await asyncio.gather(holders[0], old)
    assert log == ["old shed: delay"]
    return admission, releases, holders, fresh


async def test_while_it_sheds_a_standing_queue_keeps_to_fewer_calls_in_progress() -> None:
    admission, releases, holders, fresh = await shed_behind_three_calls(2)
    # The release shed "old": the queue's delay is controlled, so the two calls still in
    # progress are already at the bound of 2, and no fresh call takes the free slot.
    assert admission.in_progress == 2
    assert len(admission.waiting) == 2
    releases[1].set()
    await holders[1]
    # This release found nothing to shed and no more calls waiting than the bound: the load
    # has dropped, the control ends, and both fresh calls start at once, up to the 3 slots.
    assert admission.in_progress == 3
    assert not admission.waiting
    releases[2].set()
    for task in fresh:
        task.cancel()
    await asyncio.gather(holders[2], *fresh, return_exceptions=True)
    assert admission.in_progress == 0


async def test_a_queue_emptied_by_callers_leaving_ends_the_control() -> None:
    admission, releases, holders, (leaving,) = await shed_behind_three_calls(1)
    assert admission.in_progress == 2  # the control is on: "leaving" waits
    assert len(admission.waiting) == 1
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    # Its caller gone, nothing waits: a call that comes now takes the third slot at once.
    log: list[str] = []
    await asyncio.wait_for(with_deadline(10.0, admission, log, "next"), timeout=1.0)
    assert log[-1] == "next"
    for release in releases[1:]:
        release.set()
    await asyncio.gather(*holders[1:])
    assert admission.in_progress == 0
