"""Score fusion: an encoder's next-item logits with item-to-item cosine similarity over the
user's recent items.

A sequence encoder and item-to-item similarity err differently: the encoder reads the whole
history through a few dozen dimensions, the similarity remembers every co-occurrence of the
items just seen. Each score is standardized per user over the catalog (mean 0, standard
deviation 1, so that neither scale dominates), and the fused score is

    z(encoder) + weight * z(sum over the `window` newest items i_j, j = 0 for the newest,
                            of decay**j * cosine(i_j, item))

The weight and the decay are chosen on the validation split (`choose`, by NDCG@10, among
`WEIGHTS` x `DECAYS`; weight 0 is the encoder alone, so validation can refuse the fusion),
never on test. The similarity is `ItemCosine`'s, fitted on the training sequences.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from evorec.evaluation.metrics import (
    SCORES_AT_ONCE,
    Positions,
    RankingMetrics,
    Scorer,
    mask_seen,
    positions,
)

# The newest items a user's similarity is summed over; with the decays below, the tenth
# newest weighs at most 0.9**9 = 0.39 of the newest.
WINDOW = 10
DECAYS = (0.5, 0.7, 0.9)
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
# Scores below this are an item the encoder can never recommend (padding, never trained):
# they stay where they are.
EXCLUDED = -1e8


@dataclass(frozen=True)
class Fusion:
    """The chosen weight and decay, and the validation NDCG@10 each candidate reached."""

    weight: float
    decay: float
    window: int = WINDOW
    valid_ndcg10: float = 0.0


def recent_similarity(
    similarity: sparse.csr_matrix, histories: Sequence[np.ndarray], window: int, decay: float
) -> np.ndarray:
    """[users, items]: each history's similarity to every item, summed over its `window`
    newest items, the j-th newest weighted decay**j."""
    rows, columns, weights = [], [], []
    for row, history in enumerate(histories):
        newest = history[::-1][:window]
        rows.append(np.full(len(newest), row))
        columns.append(newest)
        weights.append(decay ** np.arange(len(newest)))
    recent = sparse.csr_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(columns))),
        shape=(len(histories), similarity.shape[0]),
    )
    return np.asarray((recent @ similarity).todense())


def standardized(scores: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Each row minus its mean, over its standard deviation (1 where it is 0), both taken
    over the row's `kept` entries only."""
    count = np.maximum(kept.sum(axis=1, keepdims=True), 1)
    mean = np.where(kept, scores, 0.0).sum(axis=1, keepdims=True) / count
    squares = np.where(kept, (scores - mean) ** 2, 0.0)
    deviation = np.sqrt(squares.sum(axis=1, keepdims=True) / count)
    result: np.ndarray = (scores - mean) / np.where(deviation > 0, deviation, 1.0)
    return result


def fused(encoder: np.ndarray, similarity: np.ndarray, weight: float) -> np.ndarray:
    """z(encoder) + weight * z(similarity), both standardized over the items the encoder can
    recommend (not EXCLUDED); the others keep the encoder's score."""
    if weight == 0:
        return encoder
    kept = encoder > EXCLUDED
    combined = standardized(encoder, kept) + weight * standardized(similarity, kept)
    return np.where(kept, combined, encoder)


def fused_scorer(encoder: Scorer, similarity: sparse.csr_matrix, fusion: Fusion) -> Scorer:
    """A scorer of histories with the encoder's scores fused as `fusion` says."""

    def score(histories: list[np.ndarray]) -> np.ndarray:
        recent = recent_similarity(similarity, histories, fusion.window, fusion.decay)
        return fused(encoder(histories), recent, fusion.weight)

    return score


def choose(
    encoder: Scorer,
    similarity: sparse.csr_matrix,
    histories: list[np.ndarray],
    targets: np.ndarray,
) -> Fusion:
    """The weight and decay with the best NDCG@10 of `targets` (validation) after
    `histories`; the encoder scores each batch of users once for every candidate."""
    candidates = list(itertools.product(DECAYS, WEIGHTS))
    found: dict[tuple[float, float], list[Positions]] = {c: [] for c in candidates}
    users = max(1, SCORES_AT_ONCE // similarity.shape[0])
    for start in range(0, len(histories), users):
        batch = histories[start : start + users]
        scores = encoder(batch)
        for decay in DECAYS:
            recent = recent_similarity(similarity, batch, WINDOW, decay)
            for weight in WEIGHTS:
                masked = mask_seen(fused(scores, recent, weight), batch)
                found[decay, weight].append(positions(masked, targets[start : start + users]))
    ndcg = {
        c: RankingMetrics.from_positions(Positions.concatenate(parts)).values["ndcg@10"]
        for c, parts in found.items()
    }
    # The first best in (decay, weight) order: a tie goes to the smaller decay, then weight,
    # so the encoder alone (weight 0) wins a tie with any fusion.
    decay, weight = max(candidates, key=lambda c: ndcg[c])
    return Fusion(weight=weight, decay=decay, valid_ndcg10=ndcg[decay, weight])
