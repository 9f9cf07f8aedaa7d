"""The profile picture: days without events are gaps, not drops to zero."""

from __future__ import annotations

from pathlib import Path

from evorec.interest.plot import active_runs, plot_profile
from evorec.platform.validation import DAY, timestamp
from evorec.v1 import common_pb2, interest_pb2


def test_runs_of_buckets_with_events() -> None:
    assert active_runs([3, 0, 0, 2, 1, 0, 4]) == [range(0, 1), range(3, 5), range(6, 7)]
    assert active_runs([0, 0]) == []
    assert active_runs([1, 1]) == [range(0, 2)]


def bucket(day: int, events: int) -> interest_pb2.TimelineBucket:
    weights = [common_pb2.TopicWeight(topic_id="t1", label="one", weight=1.0)] if events else []
    return interest_pb2.TimelineBucket(
        start_time=timestamp(1.6e9 + day * DAY),
        end_time=timestamp(1.6e9 + (day + 1) * DAY),
        event_count=events,
        distribution=common_pb2.TopicDistribution(weights=weights),
    )


def test_a_profile_with_idle_days_is_drawn(tmp_path: Path) -> None:
    profile = interest_pb2.InterestProfile(
        user_id="idle",
        event_count=7,
        timeline=[bucket(0, 3), bucket(1, 0), bucket(2, 0), bucket(3, 4)],
    )
    plot_profile(profile, tmp_path / "idle.png")
    assert (tmp_path / "idle.png").read_bytes()[:4] == b"\x89PNG"
