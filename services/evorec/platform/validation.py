"""Checks of request fields that every servicer shares, and the limits they hold to.

The limits here are the same in every service, and documented once (README, "Limits"):

| what | limit |
|---|---|
| an id (user, item, event, topic) | 1 to 128 characters, none of them U+0000 |
| a text to normalize or embed, an item's text | 100,000 characters |
| an event's text (a review, a query) | 10,000 characters: it is stored with every event |
| a time a caller gives | from 1970 to one day ahead of the server's clock |

Times arrive as `google.protobuf.Timestamp` and `Duration`, whose seconds may be anything an
int64 holds; they are converted here, range-checked first, so no caller's value can overflow.
"""

from __future__ import annotations

import time

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from evorec.platform.errors import Violations

DAY = 86_400.0
MAX_ID_CHARS = 128
# Why an id holding U+0000 is refused: SQLite's JSON functions (the interest store reads a
# batch's users through json_each) end a string at it, so the id would name another user.
NUL_IN_ID = "must not contain U+0000"
MAX_TEXT_CHARS = 100_000
MAX_EVENT_TEXT_CHARS = 10_000
# Texts per PreprocessService.NormalizeText call: the service refuses more, and callers
# (the embedding service) send their texts in calls of at most this many.
MAX_NORMALIZE_TEXTS = 1_000
# A time a caller gives may be this far ahead of the server's clock (clocks drift).
MAX_FUTURE_S = DAY
# Beyond any time or duration evorec has a use for (about 3,000 years), yet far from overflow.
_MAX_SECONDS = 10**11
_NANOS_PER_SECOND = 10**9


def check_id(violations: Violations, value: str, field: str, nul_allowed: bool = False) -> None:
    """An id is 1 to MAX_ID_CHARS characters, none of them U+0000 (see NUL_IN_ID) unless
    `nul_allowed`: for a call that must still reach ids stored before they were refused
    (deleting a user)."""
    violations.require(
        0 < len(value) <= MAX_ID_CHARS, field, f"must be 1 to {MAX_ID_CHARS} characters"
    )
    violations.require(nul_allowed or "\x00" not in value, field, NUL_IN_ID)


def check_text(violations: Violations, value: str, field: str, limit: int = MAX_TEXT_CHARS) -> None:
    """A text is at most `limit` characters (over it: RESOURCE_EXHAUSTED)."""
    violations.within_limit(len(value), limit, field, "characters")


def check_time(violations: Violations, stamp: Timestamp, field: str) -> float | None:
    """The seconds of a caller's time when it lies between 1970 and one day from now; None
    (and a violation) otherwise."""
    at = timestamp_seconds(stamp)
    if at is None or not 0 <= at <= time.time() + MAX_FUTURE_S:
        violations.add(field, "must lie between 1970 and one day from now")
        return None
    return at


def timestamp_seconds(stamp: Timestamp) -> float | None:
    """A Timestamp as seconds since 1970, or None where it is out of any sane range or its
    nanos are not 0 to 999,999,999 (what the Timestamp type allows)."""
    if abs(stamp.seconds) > _MAX_SECONDS or not 0 <= stamp.nanos < _NANOS_PER_SECOND:
        return None
    return stamp.seconds + stamp.nanos / 1e9


def duration_seconds(duration: Duration) -> float | None:
    """A Duration as seconds, or None where it is out of any sane range or its nanos are
    beyond +-999,999,999 (what the Duration type allows)."""
    if abs(duration.seconds) > _MAX_SECONDS or abs(duration.nanos) >= _NANOS_PER_SECOND:
        return None
    return duration.seconds + duration.nanos / 1e9


def timestamp(value: float) -> Timestamp:
    """Seconds since 1970 as a Timestamp."""
    stamp = Timestamp()
    stamp.FromNanoseconds(round(value * 1e9))
    return stamp
