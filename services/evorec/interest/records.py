"""What the interest store takes and gives: a new event, a stored one, a user's derived state."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class NewEvent:
    """A validated event on its way into the store."""

    index: int  # its position in the caller's batch
    event_id: str
    user_id: str
    item_id: str
    event_type: int
    value: float | None
    text: str
    event_time: float
    ingest_time: float
    topic_id: str | None  # None: not known (yet)
    unknown_item: bool


@dataclass(frozen=True)
class StoredRow:
    seq: int
    event_id: str
    user_id: str
    item_id: str
    event_type: int
    value: float | None
    text: str
    event_time: float
    ingest_time: float
    unknown_item: bool
    topic_id: str | None


@dataclass
class UserState:
    """The derived state of one user, read for a profile."""

    event_count: int
    first_time: float
    last_time: float
    topic_counts: dict[str, int]
    transitions: dict[tuple[str, str], int]
    days: list[tuple[int, str, int]]  # (day number, topic, count), oldest first
    recent_topics: list[str]  # topics of the newest events, newest first
    last_topic: str | None
