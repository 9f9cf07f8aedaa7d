"""Distributions over interest topics: normalization, Jensen-Shannon divergence, and the
first-order Markov prediction P_ij = n_ij / n_i. Shared by the interest service's profiles
and by the evaluation of interest-evolution predictions."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping

Distribution = dict[str, float]


def normalized(counts: Mapping[str, float]) -> Distribution:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items() if v > 0} if total > 0 else {}


def js_divergence(p: Distribution, q: Distribution) -> float:
    """Jensen-Shannon divergence in bits, in [0, 1]; 0 for identical distributions."""
    mixture = {k: (p.get(k, 0.0) + q.get(k, 0.0)) / 2 for k in p.keys() | q.keys()}

    def kl(a: Distribution) -> float:
        return sum(v * math.log2(v / mixture[k]) for k, v in a.items() if v > 0)

    return max(0.0, min(1.0, (kl(p) + kl(q)) / 2)) if p and q else 0.0


def markov_prediction(
    transitions: Mapping[tuple[str, str], int],
    start: str | None,
    fallback: Distribution,
    horizon: int,
) -> Distribution:
    """The mean distribution of the next `horizon` topics under P_ij = n_ij / n_i, from the
    topic `start`; a topic never left has `fallback` as its row."""
    if start is None:
        return fallback
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    for (a, b), n in transitions.items():
        rows[a][b] += n
    matrix = {a: normalized(row) for a, row in rows.items()}
    current: Distribution = {start: 1.0}
    total: dict[str, float] = defaultdict(float)
    for _ in range(horizon):
        following: dict[str, float] = defaultdict(float)
        for topic, mass in current.items():
            for nxt, p in matrix.get(topic, fallback).items():
                following[nxt] += mass * p
        current = dict(following)
        for topic, mass in current.items():
            total[topic] += mass / horizon
    return normalized(total)
