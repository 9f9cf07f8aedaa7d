"""The circuit breaker's states, on a clock the test moves."""

from __future__ import annotations

import pytest

from evorec.platform.circuit_breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_it_opens_after_the_failures_in_a_row_and_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failures_to_open=3, open_s=1.0, clock=Clock())
    for outcome in (False, False, True, False, False):
        assert breaker.allow()
        breaker.record(outcome)
    assert not breaker.is_open  # two in a row since the success
    assert breaker.allow()
    breaker.record(False)
    assert breaker.is_open
    assert not breaker.allow()


def test_when_half_open_exactly_one_probe_goes_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures_to_open=1, open_s=1.0, clock=clock)
    assert breaker.allow()
    breaker.record(False)
    clock.now += 0.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow()  # the probe
    assert [breaker.allow() for _ in range(3)] == [False, False, False]
    breaker.record(True)
    assert [breaker.allow() for _ in range(3)] == [True, True, True]


def test_a_failed_probe_opens_it_again_for_the_whole_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures_to_open=2, open_s=1.0, clock=clock)
    for _ in range(2):
        breaker.allow()
        breaker.record(False)
    clock.now += 1.5
    assert breaker.allow()
    breaker.record(False)  # one failure is enough once it has opened
    clock.now += 0.5
    assert not breaker.allow()
    clock.now += 0.6
    assert breaker.allow()


def test_a_probe_that_says_nothing_lets_the_next_request_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures_to_open=1, open_s=1.0, clock=clock)
    breaker.allow()
    breaker.record(False)
    clock.now += 2
    assert breaker.allow()
    assert not breaker.allow()
    breaker.record(None)  # the caller gave up
    assert breaker.allow()


@pytest.mark.parametrize(("failures", "seconds"), [(0, 1.0), (1, 0.0), (3, -1.0)])
def test_its_limits_are_checked(failures: int, seconds: float) -> None:
    with pytest.raises(ValueError, match="failures_to_open"):
        CircuitBreaker(failures, seconds)
