"""Users' item sequences, and the same under leave-one-out by time, from a prepared dataset.

For each user with at least three events: the training sequence is every item but the last
two; validation asks for the second-to-last item given the training sequence; the test asks
for the last item given everything before it (the labels of `splits.leave_one_out`, which
preparation stores as `split_loo`). Item indexes are 1-based (0 is padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evorec.data.artifacts import DatasetLayout, ItemText
from evorec.data.splits import TEST, TRAIN, VALID, leave_one_out

COLUMNS = ["user_index", "item_index", "timestamp"]


def _sequences(events: pd.DataFrame) -> list[np.ndarray]:
    ordered = events.sort_values(["user_index", "timestamp"], kind="stable")
    return [
        group.to_numpy(dtype=np.int64)
        for _, group in ordered.groupby("user_index", sort=True)["item_index"]
    ]


def user_sequences(layout: DatasetLayout) -> list[np.ndarray]:
    """Every user's whole item sequence, oldest first."""
    return _sequences(pd.read_parquet(layout.events, columns=COLUMNS))


def newest_event_time(layout: DatasetLayout) -> float:
    """The time of the dataset's newest event: how far a model trained on it has seen."""
    return float(pd.read_parquet(layout.events, columns=["timestamp"])["timestamp"].max())


def own_leave_one_out(events: pd.DataFrame) -> pd.Series:
    """Leave-one-out labels of `events` alone (each user's events by time, ties in the
    frame's order), as `LeaveOneOut.from_events` makes them when it is given none. The
    cold-start and evolution protocols train on another split's training events and validate
    on these labels, so preparation keeps the reviews of their validation events out of the
    text those protocols read."""
    ordered = events.sort_values(["user_index", "timestamp"], kind="stable")
    return leave_one_out(ordered).reindex(events.index)


@dataclass
class LeaveOneOut:
    """Per-user sequences (lists of item indexes, oldest first) and targets."""

    n_items: int
    train: list[np.ndarray]  # every user's training sequence
    valid_target: np.ndarray  # [users]
    test_target: np.ndarray  # [users]
    # The item text a model of these sequences may read (`DatasetLayout.item_vectors_of`):
    # leave-one-out's own split reads the reviews of its training events; sequences re-split
    # from another split's training events read only the reviews that train every split.
    text: ItemText = "every_split"

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
    def from_events(
        cls,
        events: pd.DataFrame,
        n_items: int,
        labels: pd.Series | None = None,
        text: ItemText = "every_split",
    ) -> LeaveOneOut:
        """The split of `events`, by their `split_loo` labels where given, else computed."""
        ordered = events.sort_values(["user_index", "timestamp"], kind="stable")
        split = (own_leave_one_out(events) if labels is None else labels).loc[ordered.index]
        evaluated = ordered["user_index"].isin(ordered.loc[split == TEST, "user_index"])

        def targets(label: str) -> np.ndarray:
            return ordered.loc[split == label, "item_index"].to_numpy(dtype=np.int64)

        return cls(
            n_items=n_items,
            train=_sequences(ordered[evaluated & (split == TRAIN)]),
            valid_target=targets(VALID),
            test_target=targets(TEST),
            text=text,
        )

    @classmethod
    def load(cls, layout: DatasetLayout) -> LeaveOneOut:
        events = pd.read_parquet(layout.events, columns=[*COLUMNS, "split_loo"])
        n_items = int(pd.read_parquet(layout.items, columns=["item_index"])["item_index"].max())
        return cls.from_events(events, n_items, events["split_loo"], text="leave_one_out")
