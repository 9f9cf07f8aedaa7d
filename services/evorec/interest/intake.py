"""From an ingest call's events to the store's: each event checked (an invalid one reported
with its field and left out), its item's topic resolved, its fields read once.

This runs on the interest service's event loop for every ingested event, beside the writer
thread that shares its process (and its GIL), so it is written for speed: one pass, each
protobuf field read once, the field path of a problem formatted only for invalid events.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from evorec.interest.records import NewEvent
from evorec.interest.topics import TopicResolver
from evorec.platform.validation import (
    MAX_EVENT_TEXT_CHARS,
    MAX_FUTURE_S,
    MAX_ID_CHARS,
    NUL_IN_ID,
    timestamp_seconds,
)
from evorec.v1 import common_pb2, interest_pb2

ID_FIELDS = ("event_id", "user_id", "item_id")
KNOWN_TYPES = frozenset(common_pb2.EventType.values()) - {common_pb2.EVENT_TYPE_UNSPECIFIED}


class EventProblem(Exception):
    """What is wrong with an event: the field (below the event) and why."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(field, description)
        self.field = field
        self.description = description


def event_time(event: common_pb2.Event, now: float) -> float:
    """The event's time in seconds since 1970 (`now` for an event that carries none), once
    the event is found valid; raises EventProblem with the first thing wrong with it."""
    if not (
        0 < len(event.event_id) <= MAX_ID_CHARS
        and 0 < len(event.user_id) <= MAX_ID_CHARS
        and 0 < len(event.item_id) <= MAX_ID_CHARS
    ):
        name = next(n for n in ID_FIELDS if not 0 < len(getattr(event, n)) <= MAX_ID_CHARS)
        raise EventProblem(name, f"must be 1 to {MAX_ID_CHARS} characters")
    if "\x00" in event.event_id or "\x00" in event.user_id or "\x00" in event.item_id:
        name = next(n for n in ID_FIELDS if "\x00" in getattr(event, n))
        raise EventProblem(name, NUL_IN_ID)
    if event.type not in KNOWN_TYPES:
        raise EventProblem("type", "must be a known event type, not UNSPECIFIED")
    if event.HasField("value") and not math.isfinite(event.value):
        raise EventProblem("value", "must be a finite number")
    if len(event.text) > MAX_EVENT_TEXT_CHARS:
        raise EventProblem("text", f"at most {MAX_EVENT_TEXT_CHARS:,} characters")
    if not event.HasField("event_time"):
        return now
    at = timestamp_seconds(event.event_time)
    if at is None or not 0 <= at <= now + MAX_FUTURE_S:
        raise EventProblem("event_time", "must lie between 1970 and one day from now")
    return at


async def new_events(
    events: Sequence[common_pb2.Event],
    offset: int,
    resolver: TopicResolver,
    summary: interest_pb2.IngestSummary,
    now: float,
) -> list[NewEvent]:
    """The valid events of `events` as the store takes them, their topics resolved; each
    invalid one is added to `summary.rejected`. Event i is number offset + i in the
    caller's numbering (a stream's messages continue it)."""
    valid: list[tuple[int, common_pb2.Event, float]] = []
    for i, event in enumerate(events):
        try:
            valid.append((offset + i, event, event_time(event, now)))
        except EventProblem as problem:
            summary.rejected.add(
                index=offset + i,
                event_id=event.event_id,
                field=f"events[{i}].{problem.field}",
                reason=problem.description,
            )
    topics = await resolver.resolve(e.item_id for _, e, _ in valid)
    built = []
    for index, event, at in valid:
        item_id = event.item_id
        topic, unknown = topics[item_id]
        built.append(
            NewEvent(
                index=index,
                event_id=event.event_id,
                user_id=event.user_id,
                item_id=item_id,
                event_type=event.type,
                value=event.value if event.HasField("value") else None,
                text=event.text,
                event_time=at,
                ingest_time=now,
                topic_id=topic,
                unknown_item=unknown,
            )
        )
    return built
