"""The shared request checks: ids, texts, and callers' times at the edges of their types."""

from __future__ import annotations

import time

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from evorec.platform.errors import InvalidArgument, ResourceExhausted, Violations
from evorec.platform.validation import (
    MAX_ID_CHARS,
    check_id,
    check_text,
    check_time,
    duration_seconds,
    timestamp,
    timestamp_seconds,
)

INT64_MAX = 2**63 - 1


def test_ids_are_one_to_128_characters() -> None:
    violations = Violations()
    check_id(violations, "u" * MAX_ID_CHARS, "ok")
    check_id(violations, "", "empty")
    check_id(violations, "u" * (MAX_ID_CHARS + 1), "long")
    assert [v.field for v in violations.items] == ["empty", "long"]


def test_a_long_text_is_over_a_limit() -> None:
    violations = Violations()
    check_text(violations, "x" * 11, "text", limit=10)
    with pytest.raises(ResourceExhausted):
        violations.raise_if_any()


@pytest.mark.parametrize("seconds", [INT64_MAX, -INT64_MAX - 1])
def test_extreme_times_and_durations_are_refused_not_overflowed(seconds: int) -> None:
    assert timestamp_seconds(Timestamp(seconds=seconds)) is None
    assert duration_seconds(Duration(seconds=seconds)) is None
    violations = Violations()
    assert check_time(violations, Timestamp(seconds=seconds), "event_time") is None
    with pytest.raises(InvalidArgument, match="event_time"):
        violations.raise_if_any()


def test_times_from_1970_to_one_day_ahead_pass() -> None:
    violations = Violations()
    assert check_time(violations, Timestamp(seconds=0), "a") == 0.0
    now = time.time()
    assert check_time(violations, timestamp(now + 3600), "b") == pytest.approx(now + 3600)
    assert check_time(violations, timestamp(now + 2 * 86_400), "c") is None
    assert check_time(violations, Timestamp(seconds=-1), "d") is None
    assert [v.field for v in violations.items] == ["c", "d"]
    assert duration_seconds(Duration(seconds=90, nanos=500_000_000)) == 90.5
