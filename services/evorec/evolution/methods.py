"""The forecasts of a user's next topics that need no hidden state, and how a forecast is
scored against what happened.

Every forecast is the mean topic distribution of the next `horizon` interactions:

- last window: the topics of the newest WINDOW events, repeated;
- topic Markov: the user's own chain P_ij = n_ij / n_i from the last topic (a topic the user
  never left has their whole distribution as its row);
- encoder: the encoder's next-item softmax summed per topic is step 1. The encoder predicts
  one item; feeding its own guesses back in (N encoder calls) is greedy and collapses onto
  one topic. Step k + 1 is instead step k carried by the user's own topic transitions: the
  encoder says where the user goes next, the user's habits how they move on from there.
  Measured on the simulator (BENCHMARKS.md, `scripts/evolution_roll_forward.py`), this beat
  repeating step 1, and carrying it by the population's transitions, which pulls every user
  towards everyone's mix.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from itertools import pairwise

import numpy as np

from evorec.topic_distributions import Distribution, js_divergence, markov_prediction, normalized

WINDOW = 10
ENCODER = "encoder"
HIDDEN_MARKOV = "hidden-markov"
TOPIC_MARKOV = "topic-markov"
LAST_WINDOW = "last-window"
METHODS = (ENCODER, HIDDEN_MARKOV, TOPIC_MARKOV, LAST_WINDOW)

Transitions = dict[str, Distribution]


def last_window(topics: Sequence[str]) -> Distribution:
    return normalized(Counter(topics[-WINDOW:]))


def topic_markov(topics: Sequence[str], horizon: int) -> Distribution:
    return markov_prediction(
        Counter(pairwise(topics)),
        topics[-1] if topics else None,
        normalized(Counter(topics)),
        horizon,
    )


def transitions(sequences: Sequence[Sequence[str]]) -> Transitions:
    """Every topic's row of P_ij = n_ij / n_i, counted over the sequences' consecutive
    topics (one user's history, or everyone's)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for topics in sequences:
        for a, b in pairwise(topics):
            counts[a][b] += 1
    return {a: normalized(row) for a, row in counts.items()}


def roll_forward(
    first: Distribution, transitions: Mapping[str, Distribution], horizon: int
) -> Distribution:
    """The mean of steps 1..horizon, step 1 being `first` and step k + 1 step k carried by
    `transitions` (a topic without a row stays where it is)."""
    current = dict(first)
    total: dict[str, float] = defaultdict(float)
    for step in range(horizon):
        if step:
            following: dict[str, float] = defaultdict(float)
            for topic, mass in current.items():
                for nxt, p in transitions.get(topic, {topic: 1.0}).items():
                    following[nxt] += mass * p
            current = following
        for topic, mass in current.items():
            total[topic] += mass / horizon
    return normalized(total)


def encoder(first: Distribution, topics: Sequence[str], horizon: int) -> Distribution:
    """The encoder's forecast: its next-topic distribution `first`, carried forward by the
    transitions of the user's own `topics`."""
    return roll_forward(first, transitions([topics]), horizon)


def next_item_probabilities(scores: np.ndarray) -> np.ndarray:
    """The softmax of item scores [users, items + 1] over the items (column 0 is padding)."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    probabilities: np.ndarray = np.exp(shifted)
    probabilities[:, 0] = 0
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities


def topic_mass(probabilities: np.ndarray, item_topics: Sequence[str]) -> list[Distribution]:
    """Next-item probabilities [users, items + 1] summed per topic (items without a topic,
    "" , left out)."""
    names = sorted({t for t in item_topics if t})
    code = {name: number for number, name in enumerate(names)}
    membership = np.zeros((len(item_topics), len(names)))
    for item, topic in enumerate(item_topics):
        if topic:
            membership[item, code[topic]] = 1.0
    mass = probabilities[:, : len(item_topics)] @ membership
    return [normalized(dict(zip(names, row.tolist(), strict=True))) for row in mass]


def top_topic(distribution: Distribution) -> str | None:
    """The heaviest topic (ties to the greater name); None for an empty distribution."""
    return max(distribution, key=lambda t: (distribution[t], t)) if distribution else None


def score(predictions: Sequence[Distribution], actual: Sequence[Distribution]) -> dict[str, float]:
    """Mean Jensen-Shannon divergence (bits) and top-topic accuracy of `predictions`. An empty
    prediction is scored as the worst case (divergence 1, top topic missed) and counted in
    `empty_predictions`, so a method cannot gain by saying nothing."""
    divergence = [js_divergence(p, a) for p, a in zip(predictions, actual, strict=True)]
    hits = [
        bool(p) and top_topic(p) == top_topic(a) for p, a in zip(predictions, actual, strict=True)
    ]
    return {
        "js_divergence": float(np.mean(divergence)) if divergence else float("nan"),
        "top_topic_accuracy": float(np.mean(hits)) if hits else float("nan"),
        "empty_predictions": float(sum(not p for p in predictions)),
    }
