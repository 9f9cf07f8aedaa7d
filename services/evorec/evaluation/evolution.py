"""Interest evolution: how well the topic distribution of a user's next interactions is
predicted, by the four forecasts of `evorec.evolution` (last window, the user's topic Markov
chain, the hidden Markov model of interest states fitted on every user's history, the
encoder's next-item distribution summed per topic and rolled forward).

Protocol: the dataset's global time split. A user's history is their events before the cut;
what is predicted is the topic distribution of their first `horizon` events after it. Each
prediction is scored against it by Jensen-Shannon divergence (base 2, lower is better) and
top-topic accuracy (the predicted heaviest topic is the actual heaviest); an empty prediction
scores as the worst case and is counted (see `evorec.evolution.methods.score`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut
from evorec.evolution import methods
from evorec.evolution.hmm import fit_interest_hmm
from evorec.topic_distributions import Distribution, normalized


@dataclass
class Evolution:
    """Per user: history items and topics before the cut, and the next topics after it."""

    training: LeaveOneOut  # the sequences before the cut (to train an encoder on)
    item_topics: np.ndarray  # topic id by item index ("" for none)
    histories: list[np.ndarray]
    history_topics: list[list[str]]
    futures: list[list[str]]
    user_ids: list[str]
    # Each future event's line in the raw events file (its ground truth in the simulator's).
    future_lines: list[np.ndarray]
    horizon: int = 10

    @classmethod
    def load(cls, layout: DatasetLayout, horizon: int = 10, min_history: int = 5) -> Evolution:
        events = pd.read_parquet(
            layout.events,
            columns=["user_id", "user_index", "item_index", "timestamp", "split_time", "line"],
        ).sort_values(["user_index", "timestamp"], kind="stable")
        items = pd.read_parquet(layout.items, columns=["item_index", "topic_id_every_split"])
        topics = np.array([""] * (int(items["item_index"].max()) + 1), dtype=object)
        topics[items["item_index"].to_numpy()] = items["topic_id_every_split"].to_numpy()
        before = events[events["split_time"] == "train"]
        histories, history_topics, futures, user_ids, future_lines = [], [], [], [], []
        for _, group in events.groupby("user_index", sort=True):
            past = group[group["split_time"] == "train"]["item_index"].to_numpy()
            after = group[group["split_time"] == "test"][:horizon]
            future = after["item_index"].to_numpy()
            future_topics = [t for t in topics[future] if t]
            if len(past) >= min_history and future_topics:
                histories.append(past)
                history_topics.append([t for t in topics[past] if t])
                futures.append(future_topics)
                user_ids.append(str(group["user_id"].iloc[0]))
                future_lines.append(after["line"].to_numpy())
        return cls(
            training=LeaveOneOut.from_events(before, len(topics) - 1),
            item_topics=topics,
            histories=histories,
            history_topics=history_topics,
            futures=futures,
            user_ids=user_ids,
            future_lines=future_lines,
            horizon=horizon,
        )

    def last_window(self) -> list[Distribution]:
        return [methods.last_window(t) for t in self.history_topics]

    def markov(self) -> list[Distribution]:
        return [methods.topic_markov(t, self.horizon) for t in self.history_topics]

    def hidden_markov(self, seed: int = 0) -> list[Distribution]:
        """The hidden Markov model fitted on every user's history (the events before the cut,
        as export fits it on the training sequences); empty forecasts if it cannot be fitted."""
        hmm = fit_interest_hmm(self.history_topics, {}, seed=seed)
        if hmm is None:
            return [{} for _ in self.history_topics]
        return [hmm.mean_forecast(hmm.codes(t), self.horizon) for t in self.history_topics]

    def from_item_scores(self, scores: np.ndarray) -> list[Distribution]:
        """The next-item softmax of each user, summed per topic."""
        return methods.topic_mass(
            methods.next_item_probabilities(scores), self.item_topics.tolist()
        )

    def encoder(self, scores: np.ndarray) -> list[Distribution]:
        """The encoder's next-topic distribution, rolled forward over the horizon by each
        user's own topic transitions (as the service does)."""
        return [
            methods.encoder(first, topics, self.horizon)
            for first, topics in zip(
                self.from_item_scores(scores), self.history_topics, strict=True
            )
        ]

    def score(self, predictions: list[Distribution]) -> dict[str, float]:
        return methods.score(predictions, [normalized(Counter(f)) for f in self.futures])
