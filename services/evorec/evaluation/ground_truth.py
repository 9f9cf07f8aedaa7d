"""The drift simulator's ground truth, for the interest-evolution protocol: which kind of
user each one is (stable, gradual, sudden, periodic) and the topic preference that was in
force at each of their events.

A forecast is over the prepared dataset's topics (clusters of text vectors), the truth over
the simulator's topics; a prepared topic stands for the simulator's topics in the shares its
items have (a cluster of pure items maps onto one true topic). What a forecast of the next N
interactions is compared with is the mean true preference over those N events: what the
user was going to draw from, not the N draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evorec.data.artifacts import DatasetLayout
from evorec.topic_distributions import Distribution, normalized

# The simulator writes one event per line of events.csv (its texts hold no newline), after
# one header line: event n is on line n + 2.
FIRST_EVENT_LINE = 2


@dataclass
class SimulatorTruth:
    patterns: dict[str, str]  # user id -> stable, gradual, sudden or periodic
    preferences: np.ndarray  # [events, true topics], row = line - FIRST_EVENT_LINE
    # Prepared topic id -> its items' shares of each true topic.
    topic_map: dict[str, np.ndarray]

    @classmethod
    def load(cls, raw: Path, layout: DatasetLayout) -> SimulatorTruth:
        """The truth of the simulated data in `raw` (events.csv and truth/, as `evorec data
        synth` writes them), prepared as `layout`."""
        users = pd.read_csv(raw / "truth" / "users.csv")
        preferences = pd.read_parquet(raw / "truth" / "preferences.parquet")
        true_items = pd.read_csv(raw / "truth" / "items.csv")
        items = pd.read_parquet(layout.items, columns=["item_id", "topic_id_every_split"])
        joined = items.merge(true_items[["item_id", "topic"]], on="item_id")
        n_true = preferences.shape[1] - 1
        topic_map = {
            str(topic): np.bincount(group["topic"], minlength=n_true) / len(group)
            for topic, group in joined.groupby("topic_id_every_split")
            if topic
        }
        return cls(
            patterns=dict(zip(users["user_id"], users["pattern"], strict=True)),
            preferences=preferences.drop(columns="event_id").to_numpy(dtype=np.float64),
            topic_map=topic_map,
        )

    def actual(self, lines: np.ndarray) -> Distribution:
        """The mean true preference over the events on these lines."""
        mean = self.preferences[lines - FIRST_EVENT_LINE].mean(axis=0)
        return normalized({f"true-{t}": float(w) for t, w in enumerate(mean)})

    def mapped(self, prediction: Distribution) -> Distribution:
        """A forecast over prepared topics as one over the simulator's topics."""
        if not prediction:
            return {}
        total = sum(p * self.topic_map[t] for t, p in prediction.items() if t in self.topic_map)
        if not isinstance(total, np.ndarray):
            return {}
        return normalized({f"true-{t}": float(w) for t, w in enumerate(total)})

    def kinds(self, user_ids: Sequence[str]) -> dict[str, list[int]]:
        """The positions of each kind of user among `user_ids`."""
        found: dict[str, list[int]] = {}
        for position, user in enumerate(user_ids):
            found.setdefault(self.patterns[user], []).append(position)
        return found
