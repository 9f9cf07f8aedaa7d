"""Distributions over interest topics: normalization, Jensen-Shannon divergence, and the
first-order Markov prediction P_ij = n_ij / n_i. Shared by the interest service's profiles
and by the evaluation of interest-evolution predictions."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

import numpy as np
from scipy.spatial.distance import jensenshannon

Distribution = dict[str, float]


def normalized(counts: Mapping[str, float]) -> Distribution:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items() if v > 0} if total > 0 else {}


def js_divergence(p: Distribution, q: Distribution) -> float:
    """Jensen-Shannon divergence in bits, in [0, 1]; 0 for identical distributions.

    An empty distribution (no topic at all) is as far as it can be from a non-empty one, 1:
    a forecast that names no topic must never score as a perfect one. Two empty ones are
    identical, 0 (a profile with nothing short-term nor long-term has not drifted). scipy's
    `jensenshannon` returns the distance, the square root of the divergence."""
    if not p or not q:
        return 0.0 if not p and not q else 1.0
    topics = sorted(p.keys() | q.keys())
    distance = jensenshannon(
        np.array([p.get(t, 0.0) for t in topics]),
        np.array([q.get(t, 0.0) for t in topics]),
        base=2,
    )
    return float(min(1.0, max(0.0, float(distance) ** 2)))


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
