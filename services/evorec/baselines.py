"""Baselines: yardsticks for the encoders, and fallback candidate sources for ranking.

- `MostPopular`: items by how often they occur in training.
- `ItemCosine`: item-to-item collaborative filtering; cosine similarity of items' user
  vectors (binary user x item matrix), scored from the user's last item.
- `ItemMarkov`: a first-order Markov chain over items, P_ij = n_ij / n_i counted over
  consecutive items of the training sequences, scored from the user's last item.

Each is fitted on training sequences (item indexes, 1-based) and scores every item (column
0, padding, included) for each history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from scipy import sparse


class SequenceScorer(Protocol):
    """Scores [len(histories), n_items + 1] for users with these histories."""

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray: ...


def _last_items(histories: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([h[-1] if len(h) else 0 for h in histories], dtype=np.int64)


class MostPopular:
    def __init__(self, sequences: Sequence[np.ndarray], n_items: int) -> None:
        counts = np.bincount(np.concatenate(sequences), minlength=n_items + 1).astype(np.float64)
        counts[0] = 0
        self.counts = counts

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.tile(self.counts, (len(histories), 1))


class ItemCosine:
    def __init__(self, sequences: Sequence[np.ndarray], n_items: int) -> None:
        rows = np.concatenate([np.full(len(s), u) for u, s in enumerate(sequences)])
        matrix = sparse.csr_matrix(
            (np.ones(len(rows)), (rows, np.concatenate(sequences))),
            shape=(len(sequences), n_items + 1),
        )
        matrix.data[:] = 1.0  # a user who saw an item twice still counts once
        co = (matrix.T @ matrix).tocsr().astype(np.float64)
        norms = np.sqrt(co.diagonal())
        norms[norms == 0] = 1.0
        inverse = sparse.diags(1 / norms)
        self.similarity = (inverse @ co @ inverse).tocsr()
        self.similarity.setdiag(0)

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(self.similarity[_last_items(histories)].todense())


class ItemMarkov:
    def __init__(self, sequences: Sequence[np.ndarray], n_items: int) -> None:
        sources = np.concatenate([s[:-1] for s in sequences if len(s) > 1])
        targets = np.concatenate([s[1:] for s in sequences if len(s) > 1])
        counts = sparse.csr_matrix(
            (np.ones(len(sources)), (sources, targets)), shape=(n_items + 1, n_items + 1)
        )
        totals = np.asarray(counts.sum(axis=1)).ravel()
        totals[totals == 0] = 1.0
        self.transitions = (sparse.diags(1 / totals) @ counts).tocsr()

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(self.transitions[_last_items(histories)].todense())
