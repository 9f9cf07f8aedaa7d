"""The drift simulator: reproducible, shaped as configured, with truth that shows drift."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evorec.data.readers import read_dataset
from evorec.data.synth import SimulatorConfig, simulate

CONFIG = SimulatorConfig(users=60, items=120, topics=4, events_per_user=40, seed=7)


def test_the_same_seed_gives_the_same_data() -> None:
    first, second = simulate(CONFIG), simulate(CONFIG)
    assert first.events.equals(second.events)
    assert first.items.equals(second.items)
    assert not simulate(SimulatorConfig(seed=8)).events.equals(first.events)


def test_events_follow_the_preference_in_force() -> None:
    data = simulate(CONFIG)
    assert np.allclose(data.preferences.sum(axis=1), 1.0)
    item_topic = dict(zip(data.items["item_id"], data.item_topics, strict=True))
    topics = np.array([item_topic[i] for i in data.events["item_id"]])
    # The drawn topic's preference is on average far above uniform (1 / topics).
    drawn = data.preferences[np.arange(len(topics)), topics]
    assert drawn.mean() > 2 / CONFIG.topics


def test_sudden_switchers_change_interest_once_at_their_switch_point() -> None:
    data = simulate(CONFIG)
    sudden = data.users[data.users["pattern"] == "sudden"]
    assert len(sudden) > 0
    for user, switch_at in zip(sudden["user_id"], sudden["switch_at"], strict=True):
        rows = np.flatnonzero(data.events["user_id"].to_numpy() == user)
        preference = data.preferences[rows]
        changes = np.flatnonzero(np.abs(np.diff(preference, axis=0)).sum(axis=1) > 0)
        progress = np.arange(len(rows)) / (len(rows) - 1)
        assert list(changes + 1) == [int(np.argmax(progress >= switch_at))]


def test_gradual_drifters_move_a_little_at_every_event() -> None:
    data = simulate(CONFIG)
    gradual = data.users[data.users["pattern"] == "gradual"]["user_id"]
    assert len(gradual) > 0
    for user in gradual:
        rows = np.flatnonzero(data.events["user_id"].to_numpy() == user)
        steps = np.abs(np.diff(data.preferences[rows], axis=0)).sum(axis=1)
        assert np.allclose(steps, steps[0])


def test_written_data_is_read_by_the_generic_reader(tmp_path: Path) -> None:
    data = simulate(CONFIG)
    data.write(tmp_path, CONFIG)
    read = read_dataset(tmp_path)
    assert read.source_format == "generic"
    assert len(read.events) == len(data.events)
    assert read.parse_errors.total == 0
    assert set(read.events["event_type"]) <= {"view", "rating", "review"}
    summary = json.loads((tmp_path / "synth.json").read_text())
    assert summary["events"] == len(data.events)
    assert (tmp_path / "truth" / "preferences.parquet").exists()
