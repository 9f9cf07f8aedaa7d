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
from collections.abc import Iterator, Sequence
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
# Scores at or below this are items a scorer rules out (-1e9 or -inf): they are left out of
# the standardization and keep their score. The encoders score every column, padding
# included (the ranking's mask removes it later), so for them every column counts.
EXCLUDED = -1e8
# Score matrices a batch of users holds at once while fusing (the encoder's, its
# standardized copy, the similarity, its standardized copy, the sum, its masked copy): a
# batch is that many times smaller than `masked_batches`', so that the memory is the same.
COPIES = 6


@dataclass(frozen=True)
class Fusion:
    """The chosen weight and decay, and the validation NDCG@10 they reached."""

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
    """z(encoder) + weight * z(similarity), both standardized over the items the encoder
    does not rule out (above EXCLUDED); the others keep the encoder's score."""
    if weight == 0:
        return encoder
    kept = encoder > EXCLUDED
    return _combined(encoder, standardized(encoder, kept), standardized(similarity, kept), weight)


def _combined(
    encoder: np.ndarray, encoder_z: np.ndarray, similarity_z: np.ndarray, weight: float
) -> np.ndarray:
    if weight == 0:
        return encoder
    return np.where(encoder > EXCLUDED, encoder_z + weight * similarity_z, encoder)


def _batches(count: int, items: int) -> Iterator[slice]:
    """Slices of at most SCORES_AT_ONCE / COPIES scores' worth of users."""
    users = max(1, SCORES_AT_ONCE // (COPIES * items))
    for start in range(0, count, users):
        yield slice(start, start + users)


def fused_scorer(encoder: Scorer, similarity: sparse.csr_matrix, fusion: Fusion) -> Scorer:
    """A scorer of histories with the encoder's scores fused as `fusion` says, a bounded
    batch of users at a time."""

    def score(histories: list[np.ndarray]) -> np.ndarray:
        parts = []
        for users in _batches(len(histories), similarity.shape[0]):
            batch = histories[users]
            recent = recent_similarity(similarity, batch, fusion.window, fusion.decay)
            parts.append(fused(encoder(batch), recent, fusion.weight))
        return np.concatenate(parts)

    return score


def choose(
    encoder: Scorer,
    similarity: sparse.csr_matrix,
    histories: list[np.ndarray],
    targets: np.ndarray,
) -> Fusion:
    """The weight and decay with the best NDCG@10 of `targets` (validation) after
    `histories`; each batch of users is scored by the encoder, and each score standardized,
    once for all the candidates."""
    candidates = list(itertools.product(DECAYS, WEIGHTS))
    found: dict[tuple[float, float], list[Positions]] = {c: [] for c in candidates}
    for users in _batches(len(histories), similarity.shape[0]):
        batch = histories[users]
        scores = encoder(batch)
        kept = scores > EXCLUDED
        scores_z = standardized(scores, kept)
        for decay in DECAYS:
            recent_z = standardized(recent_similarity(similarity, batch, WINDOW, decay), kept)
            for weight in WEIGHTS:
                masked = mask_seen(_combined(scores, scores_z, recent_z, weight), batch)
                found[decay, weight].append(positions(masked, targets[users]))
    ndcg = {
        c: RankingMetrics.from_positions(Positions.concatenate(parts)).values["ndcg@10"]
        for c, parts in found.items()
    }
    # The first best in (decay, weight) order: a tie goes to the smaller decay, then weight,
    # so the encoder alone (weight 0) wins a tie with any fusion.
    decay, weight = max(candidates, key=lambda c: ndcg[c])
    return Fusion(weight=weight, decay=decay, valid_ndcg10=ndcg[decay, weight])
