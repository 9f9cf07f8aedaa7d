"""Train/validation/test splits. Each is deterministic and writes one column of labels.

- `leave_one_out`: per user by time, the last event is `test`, the one before `valid`, the
  rest `train` (the protocol SASRec, BERT4Rec and GRU4Rec report on). Users with fewer than
  three events keep everything in `train`.
- `time_split`: one global cut in time; events after it are `test`.
- `new_item_split`: a share of the items, chosen by a seeded draw, has all its events moved
  to `test`, so that those items were never seen in training (text cold start).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRAIN, VALID, TEST = "train", "valid", "test"


def leave_one_out(events: pd.DataFrame) -> pd.Series:
    """Labels for `events` (sorted by time) under leave-one-out by time."""
    position_from_end = events.groupby("user_index", sort=False).cumcount(ascending=False)
    length = events.groupby("user_index", sort=False)["user_index"].transform("size")
    labels = np.where(position_from_end == 0, TEST, np.where(position_from_end == 1, VALID, TRAIN))
    labels = np.where(length < 3, TRAIN, labels)
    return pd.Series(labels, index=events.index, name="split_loo")


def time_split(events: pd.DataFrame, test_share: float = 0.2) -> tuple[pd.Series, float]:
    """Labels under one global cut that leaves `test_share` of the events after it; the cut
    time is returned with them."""
    if not 0 < test_share < 1:
        raise ValueError("test_share must be between 0 and 1")
    cut = float(np.quantile(events["timestamp"].to_numpy(), 1 - test_share))
    labels = np.where(events["timestamp"].to_numpy() > cut, TEST, TRAIN)
    return pd.Series(labels, index=events.index, name="split_time"), cut


def new_item_split(
    events: pd.DataFrame, item_share: float = 0.1, seed: int = 0
) -> tuple[pd.Series, np.ndarray]:
    """Labels under which a seeded `item_share` of the items is test-only; returns the labels
    and the chosen item indexes, sorted."""
    if not 0 < item_share < 1:
        raise ValueError("item_share must be between 0 and 1")
    items = np.sort(events["item_index"].unique())
    count = max(1, round(item_share * len(items)))
    chosen = np.sort(np.random.default_rng(seed).choice(items, size=count, replace=False))
    labels = np.where(events["item_index"].isin(chosen), TEST, TRAIN)
    return pd.Series(labels, index=events.index, name="split_new_item"), chosen
