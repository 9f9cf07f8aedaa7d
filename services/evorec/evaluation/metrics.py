"""Ranking metrics over the full catalog, and beyond-accuracy measures.

Every item is ranked (no sampled negatives); items the user has already interacted with are
excluded from the ranking (set to -inf), as are index 0 (padding). A target the user has
seen before therefore cannot be hit; datasets with repeat consumption say so in their
report. rank = 1 + the number of items scored strictly above the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CUTOFFS = (5, 10, 20)


def mask_seen(scores: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
    """Scores [users, items + 1] with padding and each user's seen items set to -inf."""
    masked = scores.astype(np.float64, copy=True)
    masked[:, 0] = -np.inf
    for row, history in enumerate(histories):
        masked[row, history] = -np.inf
    return masked


def ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each target among all items (ties count in the target's favour)."""
    target_scores = scores[np.arange(len(targets)), targets]
    rank: np.ndarray = 1 + (scores > target_scores[:, None]).sum(axis=1)
    return rank


@dataclass
class RankingMetrics:
    """Mean HR@k, NDCG@k (k in CUTOFFS) and MRR over users."""

    values: dict[str, float]

    @classmethod
    def from_ranks(cls, rank: np.ndarray) -> RankingMetrics:
        values: dict[str, float] = {}
        for k in CUTOFFS:
            hit = rank <= k
            values[f"hr@{k}"] = float(hit.mean())
            values[f"ndcg@{k}"] = float(np.where(hit, 1 / np.log2(rank + 1), 0.0).mean())
        values["mrr"] = float((1 / rank).mean())
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
