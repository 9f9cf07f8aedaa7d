"""Replay: a prepared dataset's events streamed into InterestService (`StreamEvents`) in time
order, as fast as possible or N times real time, resumable.

Each event gets an id derived from the dataset's content hash and its row, so replaying the
same dataset again stores nothing twice (ingest is idempotent on ids) and a replay that
stopped anywhere can simply go on. The stream is cut into segments (one `StreamEvents` call
each); after a segment is acknowledged its end is written to a checkpoint beside the data
directory, so a resumed replay starts there instead of resending everything before it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from evorec.data.artifacts import DatasetLayout
from evorec.data.schema import EVENT_TYPES
from evorec.data.splits import TRAIN
from evorec.v1 import common_pb2, interest_pb2, interest_pb2_grpc

Split = Literal["all", "train"]
BATCH = 1_000  # events per stream message
SEGMENT = 20_000  # events per StreamEvents call (and per checkpoint)
SEGMENT_TIMEOUT_S = 60.0
# user_id, item_id, timestamp, event_type, value, text, event_id
Row = tuple[str, str, float, str, float, str, str]
# With a speed factor, events whose turn comes within this many seconds go in one message.
PACING_WINDOW_S = 0.1


@dataclass
class ReplayEvents:
    """The events to replay, in time order, with their ids."""

    key: str  # names the dataset content and split, for ids and the checkpoint
    frame: pd.DataFrame  # the dataset's event columns, `event_id` added

    def __len__(self) -> int:
        return len(self.frame)


@dataclass
class ReplayResult:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def replay_events(layout: DatasetLayout, split: Split = "all") -> ReplayEvents:
    """The dataset's events (only the leave-one-out training ones with `train`), in time
    order, each with an id stable across runs."""
    digest = layout.read_manifest()["outputs"]["events.parquet"][:12]
    frame = pd.read_parquet(
        layout.events,
        columns=["user_id", "item_id", "timestamp", "event_type", "value", "text", "split_loo"],
    )
    frame["event_id"] = [f"replay-{digest}-{row}" for row in range(len(frame))]
    if split == "train":
        frame = frame[frame["split_loo"] == TRAIN]
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return ReplayEvents(f"{digest}-{split}", frame)


def to_event(row: Row) -> common_pb2.Event:
    user_id, item_id, at, event_type, value, text, event_id = row
    event = common_pb2.Event(
        event_id=event_id,
        user_id=user_id,
        item_id=item_id,
        type=EVENT_TYPES.index(event_type) + 1,  # type: ignore[arg-type]
        text=text,
    )
    event.event_time.FromNanoseconds(round(at * 1e9))
    if not math.isnan(value):
        event.value = value
    return event


class Checkpoint:
    """How many of a replay's events were acknowledged, kept in a small JSON file."""

    def __init__(self, folder: Path, key: str) -> None:
        self.path = folder / f"{key}.json"

    def read(self) -> int:
        return int(json.loads(self.path.read_text())["sent"]) if self.path.exists() else 0

    def write(self, sent: int, total: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_suffix(".partial")
        staging.write_text(json.dumps({"sent": sent, "total": total}) + "\n")
        staging.replace(self.path)


async def replay(
    stub: interest_pb2_grpc.InterestServiceAsyncStub,
    events: ReplayEvents,
    checkpoint: Checkpoint | None = None,
    speed: float | None = None,
    on_progress: Callable[[int, int], None] = lambda sent, total: None,
) -> ReplayResult:
    """Streams `events` from the checkpoint's position on (from the start without one);
    `speed` None sends as fast as the service takes them, else N times real time."""
    rows = list(
        events.frame[
            ["user_id", "item_id", "timestamp", "event_type", "value", "text", "event_id"]
        ].itertuples(index=False, name=None)
    )
    start = checkpoint.read() if checkpoint is not None else 0
    result = ReplayResult(sent=start)
    on_progress(start, len(rows))
    clock: tuple[float, float] | None = None  # (wall time, event time) of the first event
    for segment_start in range(start, len(rows), SEGMENT):
        segment = rows[segment_start : segment_start + SEGMENT]
        if speed is not None and clock is None and segment:
            clock = (time.monotonic(), segment[0][2])

        # The segment's deadline: its span of event time at the replay's speed, and a minute.
        paced = (segment[-1][2] - segment[0][2]) / speed if speed is not None else 0.0
        response = await stub.StreamEvents(
            _messages(segment, segment_start, len(rows), speed, clock, on_progress),
            timeout=SEGMENT_TIMEOUT_S + paced,
        )
        summary = response.summary
        result.sent = segment_start + len(segment)
        result.accepted += summary.accepted_count
        result.duplicates += summary.duplicate_count
        result.rejected += summary.rejected_count
        for rejected in summary.rejected:
            result.reasons[rejected.reason] = result.reasons.get(rejected.reason, 0) + 1
        if checkpoint is not None:
            checkpoint.write(result.sent, len(rows))
    return result


async def _messages(
    segment: list[Row],
    offset: int,
    total: int,
    speed: float | None,
    clock: tuple[float, float] | None,
    on_progress: Callable[[int, int], None],
) -> AsyncIterator[interest_pb2.StreamEventsRequest]:
    """The stream messages of one segment, which starts at row `offset` of `total`."""
    async for first, batch in _batches(segment, speed, clock):
        yield interest_pb2.StreamEventsRequest(events=[to_event(row) for row in batch])
        on_progress(offset + first + len(batch), total)


async def _batches(
    rows: list[Row],
    speed: float | None,
    clock: tuple[float, float] | None,
) -> AsyncIterator[tuple[int, list[Row]]]:
    """(position, rows) of each message: BATCH rows at a time, and with a speed factor only
    the rows whose turn has come (waiting for it)."""
    position = 0
    while position < len(rows):
        end = min(position + BATCH, len(rows))
        if speed is not None and clock is not None:
            due = clock[0] + (rows[position][2] - clock[1]) / speed
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            horizon = (time.monotonic() - clock[0] + PACING_WINDOW_S) * speed + clock[1]
            end = position + 1
            while end < min(position + BATCH, len(rows)) and rows[end][2] <= horizon:
                end += 1
        yield position, rows[position:end]
        position = end
