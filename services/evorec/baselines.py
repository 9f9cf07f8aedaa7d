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


# The co-occurrence entries ItemCosine holds at once while it keeps each item's nearest
# neighbours (2^24: about 200 MiB of values and indices). The whole item x item product
# would be about 1.2 billion entries at a million items.
CO_OCCURRENCES_AT_ONCE = 1 << 24


def top_per_row(matrix: sparse.csr_matrix, n: int) -> sparse.csr_matrix:
    """`matrix` with only the `n` largest positive entries of each row kept, as float32;
    among equal entries, the lower column wins."""
    matrix = matrix.tocsr()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    rank_in_row = np.arange(len(order)) - matrix.indptr[rows[order]]
    keep = order[(rank_in_row < n) & (matrix.data[order] > 0)]
    return sparse.csr_matrix(
        (matrix.data[keep], (rows[keep], matrix.indices[keep])),
        shape=matrix.shape,
        dtype=np.float32,
    )


def row_blocks(cost: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) blocks of rows whose `cost` sums to at most `budget` each (a
    row that alone costs more is a block of its own)."""
    cumulative = np.cumsum(cost)
    blocks, start = [], 0
    while start < len(cost):
        spent = cumulative[start - 1] if start else 0
        end = max(int(np.searchsorted(cumulative, spent + budget, side="right")), start + 1)
        blocks.append((start, end))
        start = end
    return blocks


class ItemCosine:
    """Cosine similarity of items' binary user vectors.

    With `neighbours`, only each item's `neighbours` most similar items are kept, and the
    item x item product is computed a block of items at a time, so that no more than
    CO_OCCURRENCES_AT_ONCE of its entries are held: that is what makes it fit at a million
    items. Without, the whole similarity is kept (for evaluation on small catalogs).
    """

    def __init__(
        self, sequences: Sequence[np.ndarray], n_items: int, neighbours: int | None = None
    ) -> None:
        rows = np.concatenate([np.full(len(s), u) for u, s in enumerate(sequences)])
        user_items = sparse.csr_matrix(
            (np.ones(len(rows)), (rows, np.concatenate(sequences))),
            shape=(len(sequences), n_items + 1),
        )
        user_items.data[:] = 1.0  # a user who saw an item twice still counts once
        item_users = user_items.T.tocsr()
        norms = np.sqrt(item_users.getnnz(axis=1).astype(np.float64))
        norms[norms == 0] = 1.0
        inverse = sparse.diags(1 / norms)
        # An item's row of the product has at most as many entries as its users' items.
        entries_bound = item_users @ user_items.getnnz(axis=1)
        blocks = []
        for start, end in row_blocks(entries_bound, CO_OCCURRENCES_AT_ONCE):
            co = (item_users[start:end] @ user_items).tocsr()
            block = (sparse.diags(1 / norms[start:end]) @ co @ inverse).tocsr()
            block.setdiag(0, k=start)
            block.eliminate_zeros()
            blocks.append(block if neighbours is None else top_per_row(block, neighbours))
        self.similarity = sparse.vstack(blocks, format="csr")

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
