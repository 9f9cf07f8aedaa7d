"""Baselines: yardsticks for the encoders, and fallback candidate sources for ranking.

- `MostPopular`: items by how often they occur in training.
- `ItemCosine`: item-to-item collaborative filtering; cosine similarity of items' user
  vectors (binary user x item matrix), scored from the user's last item.
- `ItemCoOccurrence`: item-to-item similarity of items consumed close together (within a
  few positions of each other in a sequence), scored from the user's last item.
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
    among equal entries, the lower column wins.

    Rows with at most `n` positive entries are kept whole; each longer row is cut at its
    n-th largest value by a partial sort of that row alone (a global sort of every entry by
    row, value and column took minutes at a million items)."""
    matrix = sparse.csr_matrix(matrix)
    if n <= 0:
        return sparse.csr_matrix(matrix.shape, dtype=np.float32)
    if not matrix.has_canonical_format:
        matrix = matrix.copy()
        matrix.sum_duplicates()  # columns in order within each row: ties go to the lower
    keep = matrix.data > 0
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    positives = kept_before[matrix.indptr[1:]] - kept_before[matrix.indptr[:-1]]
    for row in np.flatnonzero(positives > n).tolist():
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        values = matrix.data[start:end]
        threshold = np.partition(values, len(values) - n)[len(values) - n]
        chosen = values > threshold
        ties = np.flatnonzero(values == threshold)[: n - int(chosen.sum())]
        chosen[ties] = True
        keep[start:end] = chosen
    kept = np.concatenate([[0], np.cumsum(keep)])[matrix.indptr]
    return sparse.csr_matrix(
        (matrix.data[keep].astype(np.float32), matrix.indices[keep], kept),
        shape=matrix.shape,
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
        inverse = 1 / norms
        # An item's row of the product has at most as many entries as its users' items.
        entries_bound = item_users @ user_items.getnnz(axis=1)
        blocks = []
        for start, end in row_blocks(entries_bound, CO_OCCURRENCES_AT_ONCE):
            block = (item_users[start:end] @ user_items).tocsr()
            block_rows = np.repeat(np.arange(start, end), np.diff(block.indptr))
            block.data *= inverse[block_rows]
            block.data *= inverse[block.indices]
            block.setdiag(0, k=start)
            block.eliminate_zeros()
            blocks.append(block if neighbours is None else top_per_row(block, neighbours))
        self.similarity = sparse.vstack(blocks, format="csr")

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(self.similarity[_last_items(histories)].todense())


# How near in a sequence two items count as consumed together, in positions (ItemCoOccurrence).
# Chosen on ml-100k's validation split, fused with its Transformer's scores
# (scripts/fusion_sources.py; BENCHMARKS.md): windows of 7 to 12 fused about as well, 5 and
# 15 or more less well.
CO_OCCURRENCE_WINDOW = 10


class ItemCoOccurrence:
    """How often two items come within `window` positions of each other in the training
    sequences, both ways, normalized as C_ij / sqrt(C_i * C_j), where C_i counts every pair
    item i is in (the symmetric normalization of a co-occurrence graph).

    ItemCosine counts two items once for every user who has both anywhere in their history;
    this counts how often they come close, so it keeps what a user's history blurs: which
    items go together in one sitting (an evening of ratings, one shopping trip). The whole
    item x item matrix is kept: for evaluation on small catalogs, like ItemCosine without
    `neighbours`.
    """

    def __init__(
        self, sequences: Sequence[np.ndarray], n_items: int, window: int = CO_OCCURRENCE_WINDOW
    ) -> None:
        items = np.concatenate(sequences)
        owner = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
        firsts, seconds = [], []
        for distance in range(1, window + 1):
            same_user = owner[:-distance] == owner[distance:]
            firsts.append(items[:-distance][same_user])
            seconds.append(items[distance:][same_user])
        first, second = np.concatenate(firsts), np.concatenate(seconds)
        counts = sparse.csr_matrix(
            (np.ones(2 * len(first)), (np.concatenate([first, second]),
                                       np.concatenate([second, first]))),
            shape=(n_items + 1, n_items + 1),
        )  # fmt: skip
        totals = np.asarray(counts.sum(axis=1)).ravel()
        totals[totals == 0] = 1.0
        inverse = sparse.diags(1 / np.sqrt(totals))
        similarity = (inverse @ counts @ inverse).tocsr()
        similarity.setdiag(0)  # an item repeated within the window is not its own neighbour
        similarity.eliminate_zeros()
        self.similarity = similarity

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
