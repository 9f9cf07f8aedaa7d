"""`evorec retrain --every`: durations, and a loop that never overlaps its runs."""

from __future__ import annotations

import time

import pytest

from evorec.learning.schedule import every, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("6h", 21600), ("1d", 86400), ("1h30m", 5400), ("2.5", 2.5)],
)
def test_durations_read_as_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "1h 30m", "0s", "-3"])
def test_a_bad_duration_is_refused_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_runs_are_spaced_start_to_start_and_a_long_one_is_followed_at_once() -> None:
    slept: list[float] = []
    durations = iter([0.0, 0.3, 0.0])

    def run() -> None:
        time.sleep(next(durations))

    assert every(0.2, run, runs=3, sleep=slept.append) == 3
    assert len(slept) == 2
    assert 0.15 <= slept[0] <= 0.2  # the rest of the period after a quick run
    assert slept[1] == 0.0  # a run longer than the period: the next starts at once
