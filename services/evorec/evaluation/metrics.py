"""Ranking metrics over the full catalog, and beyond-accuracy measures.

Every item is ranked (no sampled negatives); items the user has already interacted with are
excluded from the ranking (set to -inf), as are index 0 (padding). A target the user has
seen before therefore cannot be hit; datasets with repeat consumption say so in their
report. A target's place is 1 + the items scored above it; ties are broken at random, in
expectation (see RankingMetrics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

CUTOFFS = (5, 10, 20)
# Scores held at once by `masked_batches` (users in a batch x items): 2^24 float64 scores,
# 128 MiB. All users at once would hold 1,000 x 1,000,001 of them at a million items, 8 GB.
SCORES_AT_ONCE = 1 << 24


def mask_seen(scores: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
    """Scores [users, items + 1] with padding and each user's seen items set to -inf."""
    masked = scores.astype(np.float64, copy=True)
    masked[:, 0] = -np.inf
    for row, history in enumerate(histories):
        masked[row, history] = -np.inf
    return masked


@dataclass(frozen=True)
class Positions:
    """Where each target lands: how many items score above it, and how many exactly as it."""

    above: np.ndarray
    tied: np.ndarray

    @classmethod
    def concatenate(cls, parts: Sequence[Positions]) -> Positions:
        """The positions of several batches of users, in order."""
        return cls(
            np.concatenate([p.above for p in parts]), np.concatenate([p.tied for p in parts])
        )


def positions(scores: np.ndarray, targets: np.ndarray) -> Positions:
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    return Positions(
        above=(scores > target_scores).sum(axis=1),
        tied=(scores == target_scores).sum(axis=1) - 1,
    )


Scorer = Callable[[list[np.ndarray]], np.ndarray]


def masked_batches(
    score: Scorer, histories: list[np.ndarray], columns: int
) -> Iterator[tuple[slice, np.ndarray]]:
    """(users, scores) of a batch of users at a time: `score` (histories -> scores [users,
    `columns`]) with each user's seen items masked (mask_seen); the batches are as large as
    SCORES_AT_ONCE allows, so that memory is bounded whatever the number of users."""
    users = max(1, SCORES_AT_ONCE // columns)
    for start in range(0, len(histories), users):
        batch = slice(start, start + users)
        yield batch, mask_seen(score(histories[batch]), histories[batch])


def catalog_positions(
    score: Scorer, histories: list[np.ndarray], targets: np.ndarray, columns: int
) -> Positions:
    """Where each target lands among the full catalog's items, its user's seen items
    excluded, scored a batch of users at a time (masked_batches)."""
    batches = masked_batches(score, histories, columns)
    return Positions.concatenate([positions(masked, targets[users]) for users, masked in batches])


def _expected(positions: Positions, gain: np.ndarray) -> np.ndarray:
    """The mean of `gain` over the places the target may take when its ties are broken at
    random: places above + 1 to above + tied + 1 (gain[r] is the cumulative gain to place r)."""
    low = positions.above
    high = positions.above + positions.tied + 1
    result: np.ndarray = (gain[high] - gain[low]) / (positions.tied + 1)
    return result


@dataclass
class RankingMetrics:
    """Mean HR@k, NDCG@k (k in CUTOFFS) and MRR over users, each the expectation under
    random tie-breaking, so that a model scoring many items alike (a baseline's zeros) gains
    nothing and loses nothing by it."""

    values: dict[str, float]

    @classmethod
    def from_positions(cls, found: Positions) -> RankingMetrics:
        places = np.arange(0, int((found.above + found.tied).max()) + 2)
        values: dict[str, float] = {}
        for k in CUTOFFS:
            hit = np.concatenate([[0.0], np.cumsum(np.where(places[1:] <= k, 1.0, 0.0))])
            ndcg = np.concatenate(
                [[0.0], np.cumsum(np.where(places[1:] <= k, 1 / np.log2(places[1:] + 1), 0.0))]
            )
            values[f"hr@{k}"] = float(_expected(found, hit).mean())
            values[f"ndcg@{k}"] = float(_expected(found, ndcg).mean())
        reciprocal = np.concatenate([[0.0], np.cumsum(1 / places[1:])])
        values["mrr"] = float(_expected(found, reciprocal).mean())
        return cls(values)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the k best items per row, best first."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def beyond_accuracy(
    recommended: np.ndarray, n_items: int, popularity: np.ndarray, text_vectors: np.ndarray | None
) -> dict[str, float]:
    """Catalog coverage (share of items in any list), novelty (mean -log2 of the items'
    share of interactions) and intra-list diversity (mean 1 - cosine of text vectors within a
    list; needs text vectors)."""
    share = popularity / max(1, popularity.sum())
    values = {
        "coverage": len(np.unique(recommended)) / n_items,
        "novelty": float(-np.log2(np.maximum(share[recommended], 1e-12)).mean()),
    }
    if text_vectors is not None:
        lists = text_vectors[recommended]  # [users, k, dim], unit rows or zeros
        similarity = np.einsum("ukd,ujd->ukj", lists, lists)
        k = recommended.shape[1]
        off_diagonal = (similarity.sum(axis=(1, 2)) - np.einsum("ukk->u", similarity)) / (
            k * (k - 1)
        )
        values["diversity"] = float((1 - off_diagonal).mean())
    return values
