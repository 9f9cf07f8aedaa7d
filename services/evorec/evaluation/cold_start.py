"""Text cold start: recall of items never seen in training, on the new-item split.

The items the dataset's new-item split holds out have all their events removed from
training. For each user who later met one of them, the question is which item comes next,
given the user's other events before it; the answer is the first held-out item the user met,
ranked among all items (the user's seen items excluded), so that a new item must be placed
above the items the model was trained on. A model of ids alone knows nothing of the new
items; a model that reads text can place them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut
from evorec.evaluation.metrics import RankingMetrics, mask_seen, positions


@dataclass
class ColdStart:
    training: LeaveOneOut  # sequences without the held-out items
    histories: list[np.ndarray]
    targets: np.ndarray
    candidates: np.ndarray  # the held-out item indexes

    @classmethod
    def load(cls, layout: DatasetLayout) -> ColdStart:
        events = pd.read_parquet(
            layout.events, columns=["user_index", "item_index", "timestamp", "split_new_item"]
        ).sort_values(["user_index", "timestamp"], kind="stable")
        n_items = int(pd.read_parquet(layout.items, columns=["item_index"])["item_index"].max())
        held = events["split_new_item"] == "test"
        seen = events[~held]
        histories, targets = [], []
        for _, group in events.groupby("user_index", sort=True):
            first_new = np.flatnonzero(group["split_new_item"].to_numpy() == "test")
            if not len(first_new):
                continue
            before = group.iloc[: first_new[0]]
            history = before[before["split_new_item"] != "test"]["item_index"].to_numpy()
            if len(history):
                histories.append(history)
                targets.append(int(group["item_index"].iloc[first_new[0]]))
        return cls(
            training=LeaveOneOut.from_events(seen, n_items),
            histories=histories,
            targets=np.array(targets, dtype=np.int64),
            candidates=np.sort(events.loc[held, "item_index"].unique()),
        )

    def recall(self, scores: np.ndarray, k: int = 20) -> float:
        """Share of users whose held-out item ranks within the top k of all items (k in
        metrics.CUTOFFS; seen items excluded; ties broken at random, in expectation)."""
        masked = mask_seen(scores, self.histories)
        return RankingMetrics.from_positions(positions(masked, self.targets)).values[f"hr@{k}"]
