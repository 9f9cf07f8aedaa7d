"""Users' item sequences under leave-one-out by time, from a prepared dataset.

For each user with at least three events: the training sequence is every item but the last
two; validation asks for the second-to-last item given the training sequence; the test asks
for the last item given everything before it. Item indexes are 1-based (0 is padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evorec.data.artifacts import DatasetLayout


def _sequences(events: pd.DataFrame) -> list[np.ndarray]:
    ordered = events.sort_values(["user_index", "timestamp"], kind="stable")
    return [
        group.to_numpy(dtype=np.int64)
        for _, group in ordered.groupby("user_index", sort=True)["item_index"]
    ]


def user_sequences(layout: DatasetLayout) -> list[np.ndarray]:
    """Every user's whole item sequence, oldest first."""
    return _sequences(
        pd.read_parquet(layout.events, columns=["user_index", "item_index", "timestamp"])
    )


@dataclass
class LeaveOneOut:
    """Per-user sequences (lists of item indexes, oldest first) and targets."""

    n_items: int
    train: list[np.ndarray]  # every user's training sequence
    valid_target: np.ndarray  # [users]
    test_target: np.ndarray  # [users]

    @property
    def valid_input(self) -> list[np.ndarray]:
        return self.train

    @property
    def test_input(self) -> list[np.ndarray]:
        return [
            np.append(seq, target)
            for seq, target in zip(self.train, self.valid_target, strict=True)
        ]

    @classmethod
    def from_events(cls, events: pd.DataFrame, n_items: int) -> LeaveOneOut:
        long_enough = [s for s in _sequences(events) if len(s) >= 3]
        return cls(
            n_items=n_items,
            train=[s[:-2] for s in long_enough],
            valid_target=np.array([s[-2] for s in long_enough], dtype=np.int64),
            test_target=np.array([s[-1] for s in long_enough], dtype=np.int64),
        )

    @classmethod
    def load(cls, layout: DatasetLayout) -> LeaveOneOut:
        events = pd.read_parquet(layout.events, columns=["user_index", "item_index", "timestamp"])
        n_items = int(pd.read_parquet(layout.items, columns=["item_index"])["item_index"].max())
        return cls.from_events(events, n_items)
