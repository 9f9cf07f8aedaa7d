"""Interest evolution: how well the topic distribution of a user's next interactions is
predicted, by the last window repeated, a Markov chain over topics, and the encoder's
next-item distribution summed per topic.

Protocol: the dataset's global time split. A user's history is their events before the cut;
what is predicted is the topic distribution of their first `horizon` events after it. Each
prediction is scored against it by Jensen-Shannon divergence (base 2, lower is better) and
top-topic accuracy (the predicted heaviest topic is the actual heaviest).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut
from evorec.topic_distributions import Distribution, js_divergence, markov_prediction, normalized

WINDOW = 10


@dataclass
class Evolution:
    """Per user: history items and topics before the cut, and the next topics after it."""

    training: LeaveOneOut  # the sequences before the cut (to train an encoder on)
    item_topics: np.ndarray  # topic id by item index ("" for none)
    histories: list[np.ndarray]
    history_topics: list[list[str]]
    futures: list[list[str]]

    @classmethod
    def load(cls, layout: DatasetLayout, horizon: int = 10, min_history: int = 5) -> Evolution:
        events = pd.read_parquet(
            layout.events, columns=["user_index", "item_index", "timestamp", "split_time"]
        ).sort_values(["user_index", "timestamp"], kind="stable")
        items = pd.read_parquet(layout.items, columns=["item_index", "topic_id"])
        topics = np.array([""] * (int(items["item_index"].max()) + 1), dtype=object)
        topics[items["item_index"].to_numpy()] = items["topic_id"].to_numpy()
        before = events[events["split_time"] == "train"]
        histories, history_topics, futures = [], [], []
        for _, group in events.groupby("user_index", sort=True):
            past = group[group["split_time"] == "train"]["item_index"].to_numpy()
            future = group[group["split_time"] == "test"]["item_index"].to_numpy()[:horizon]
            future_topics = [t for t in topics[future] if t]
            if len(past) >= min_history and future_topics:
                histories.append(past)
                history_topics.append([t for t in topics[past] if t])
                futures.append(future_topics)
        return cls(
            training=LeaveOneOut.from_events(before, len(topics) - 1),
            item_topics=topics,
            histories=histories,
            history_topics=history_topics,
            futures=futures,
        )

    def last_window(self) -> list[Distribution]:
        return [normalized(Counter(t[-WINDOW:])) for t in self.history_topics]

    def markov(self, horizon: int = 10) -> list[Distribution]:
        predictions = []
        for topics in self.history_topics:
            transitions = Counter(pairwise(topics))
            predictions.append(
                markov_prediction(
                    transitions,
                    topics[-1] if topics else None,
                    normalized(Counter(topics)),
                    horizon,
                )
            )
        return predictions

    def from_item_scores(self, scores: np.ndarray) -> list[Distribution]:
        """The next-item softmax of each user, summed per topic."""
        shifted = scores - scores.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted)
        probabilities[:, 0] = 0
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        names = sorted({t for t in self.item_topics[1:] if t})
        membership = np.array(
            [[t == name for name in names] for t in self.item_topics], dtype=np.float64
        )
        mass = probabilities @ membership  # [users, topics]
        return [normalized(dict(zip(names, row.tolist(), strict=True))) for row in mass]

    def score(self, predictions: list[Distribution]) -> dict[str, float]:
        actual = [normalized(Counter(f)) for f in self.futures]
        divergence = [js_divergence(p, a) for p, a in zip(predictions, actual, strict=True)]
        top = [
            bool(p) and max(p, key=lambda t: (p[t], t)) == max(a, key=lambda t: (a[t], t))
            for p, a in zip(predictions, actual, strict=True)
        ]
        return {
            "js_divergence": float(np.mean(divergence)),
            "top_topic_accuracy": float(np.mean(top)),
        }
