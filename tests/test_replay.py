"""`evorec replay`: a prepared dataset streamed into InterestService, paced, resumable."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from evorec.data.artifacts import DatasetLayout
from evorec.learning.replay import Checkpoint, ReplayEvents, replay, replay_events
from evorec.platform.clients import interest_client
from evorec.v1 import interest_pb2
from tests.conftest import Stack
from tests.test_live_dataset import run_evorec


@pytest.fixture
async def interest_up(stack: Stack, prepared: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    for name in ("preprocess", "embedding", "interest"):
        await stack.start(name)
    return stack


async def test_a_replay_stores_the_events_once_and_resumes_where_it_stopped(
    interest_up: Stack, prepared: Path, tmp_path: Path
) -> None:
    events = replay_events(DatasetLayout(prepared), "train")
    frame = events.frame
    assert frame["timestamp"].is_monotonic_increasing
    assert set(frame["split_loo"]) == {"train"}
    checkpoint = Checkpoint(tmp_path / "replay", events.key)
    async with interest_client(interest_up.settings()) as interest:
        progress: list[int] = []
        done = await replay(
            interest.stub, events, checkpoint, on_progress=lambda s, t: progress.append(s)
        )
        assert (done.sent, done.accepted, done.rejected) == (len(events), len(events), 0)
        assert checkpoint.read() == len(events) == progress[-1]
        history = await interest.stub.GetUserHistory(
            interest_pb2.GetUserHistoryRequest(user_id="u1", page_size=1000)
        )
        assert len(history.events) == (frame["user_id"] == "u1").sum()

        # Finished: a resumed replay sends nothing; from the start, everything is a duplicate.
        again = await replay(interest.stub, events, checkpoint)
        assert (again.sent, again.accepted, again.duplicates) == (len(events), 0, 0)
        checkpoint.write(1000, len(events))
        resumed = await replay(interest.stub, events, checkpoint)
        assert (resumed.accepted, resumed.duplicates) == (0, len(events) - 1000)

        everything = replay_events(DatasetLayout(prepared), "all")
        rest = await replay(interest.stub, everything)
        assert rest.accepted == len(everything) - len(events)  # the same ids for the same rows


async def test_a_replay_at_a_speed_factor_takes_the_scaled_time(
    interest_up: Stack, prepared: Path
) -> None:
    events = replay_events(DatasetLayout(prepared), "all")
    some = ReplayEvents(events.key, events.frame.head(200))
    span = float(some.frame["timestamp"].iloc[-1] - some.frame["timestamp"].iloc[0])
    messages: list[int] = []
    async with interest_client(interest_up.settings()) as interest:
        started = time.monotonic()
        done = await replay(
            interest.stub, some, speed=span / 1.5, on_progress=lambda s, t: messages.append(s)
        )
        elapsed = time.monotonic() - started
    assert done.accepted == 200
    assert 1.4 <= elapsed <= 4.0
    assert len(messages) > 5  # sent as the events come due, not in one message


async def test_evorec_replay_shows_what_it_stored(interest_up: Stack, prepared: Path) -> None:
    count = len(replay_events(DatasetLayout(prepared), "train"))
    code, out, err = await run_evorec("replay", str(prepared), "--split", "train")
    assert code == 0, err
    assert f"{count:,} of {count:,} events sent: {count:,} stored" in out
    code, out, err = await run_evorec("replay", str(prepared), "--split", "train", "--restart")
    assert code == 0, err
    assert " 0 stored" in out
    code, out, err = await run_evorec("replay", str(prepared), "--split", "some")
    assert code == 1
    assert "--split must be all or train" in err
