"""Splits: leave-one-out by time, a global time cut, held-out new items."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evorec.data.artifacts import DatasetLayout
from evorec.data.splits import leave_one_out, new_item_split, time_split
from tests.script_runs import script_module


def events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_index": [0, 1, 0, 0, 1, 2, 0, 1],
            "item_index": [1, 2, 3, 1, 4, 2, 5, 1],
            "timestamp": [1, 2, 3, 4, 5, 6, 7, 8],
        }
    )


def test_leave_one_out_takes_each_users_last_two_events() -> None:
    assert list(leave_one_out(events())) == [
        "train", "train", "train", "valid", "valid", "train", "test", "test",
    ]  # fmt: skip


def test_time_split_cuts_once_for_everyone() -> None:
    labels, cut = time_split(events(), test_share=0.25)
    assert cut == 6.25
    assert list(labels) == ["train"] * 6 + ["test"] * 2


def test_new_item_split_moves_all_events_of_chosen_items_to_test() -> None:
    labels, chosen = new_item_split(events(), item_share=0.4, seed=3)
    _, same = new_item_split(events(), item_share=0.4, seed=3)
    assert list(chosen) == list(same)
    assert len(chosen) == 2
    frame = events().assign(label=labels)
    assert set(frame[frame["item_index"].isin(chosen)]["label"]) == {"test"}
    assert set(frame[~frame["item_index"].isin(chosen)]["label"]) == {"train"}


def test_tied_targets_counts_tied_and_repeated_test_targets(tmp_path: Path) -> None:
    events = pd.DataFrame(
        {
            "user_index": [0, 0, 0, 1, 1, 1, 2, 2],
            "item_index": [4, 5, 6, 7, 8, 7, 9, 9],  # user 1's test item is its first
            "timestamp": [1.0, 5.0, 5.0, 1.0, 2.0, 3.0, 7.0, 7.0],
            "split_loo": ["train", "valid", "test", "train", "valid", "test", "train", "train"],
        }
    )
    layout = DatasetLayout(tmp_path)
    events.to_parquet(layout.events)
    assert script_module("tied_targets").tied_targets(layout) == (2, 1, 1)
