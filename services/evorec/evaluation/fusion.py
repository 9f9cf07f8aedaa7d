"""Score fusion: an encoder's next-item logits with item-to-item similarity over the
user's recent items, from one or more similarity sources.

A sequence encoder and item-to-item similarity err differently: the encoder reads the whole
history through a few dozen dimensions, a similarity remembers every co-occurrence of the
items just seen. Each score is standardized per user over the catalog (mean 0, standard
deviation 1, so that no scale dominates), and the fused score is

    z(encoder) + sum over sources s of weight_s * z(sum over the `window` newest items
                                                    i_j, j = 0 for the newest,
                                                    of decay**j * similarity_s(i_j, item))

The weights and the decay are chosen on the validation split (`choose`, by NDCG@10, among
`DECAYS` x `WEIGHTS` for each source; weight 0 leaves a source out, all 0 is the encoder
alone, so validation can refuse the fusion), never on test. The sources are the baselines'
similarities (`ItemCosine`, `ItemCoOccurrence`), fitted on the training sequences.
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
# Score matrices a batch of users holds at once while fusing: the encoder's, its
# standardized copy, the sum and its masked copy, and two per source (its similarity and its
# standardized copy). A batch is that many times smaller than `masked_batches`', so that the
# memory is the same.
COPIES = 4
COPIES_PER_SOURCE = 2


@dataclass(frozen=True)
class Fusion:
    """The chosen weight of each source (by name) and the decay, and the validation NDCG@10
    they reached."""

    weights: dict[str, float]
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


def fused(
    encoder: np.ndarray, similarities: Sequence[np.ndarray], weights: Sequence[float]
) -> np.ndarray:
    """z(encoder) + the sum of weight * z(similarity), each standardized over the items the
    encoder does not rule out (above EXCLUDED); the others keep the encoder's score."""
    if not any(weights):
        return encoder
    kept = encoder > EXCLUDED
    return _combined(
        encoder,
        standardized(encoder, kept),
        [standardized(s, kept) if w else s for s, w in zip(similarities, weights, strict=True)],
        weights,
    )


def _combined(
    encoder: np.ndarray,
    encoder_z: np.ndarray,
    similarities_z: Sequence[np.ndarray],
    weights: Sequence[float],
) -> np.ndarray:
    if not any(weights):
        return encoder
    total = encoder_z.copy()
    for similarity_z, weight in zip(similarities_z, weights, strict=True):
        if weight:
            total += weight * similarity_z
    return np.where(encoder > EXCLUDED, total, encoder)


def _batches(count: int, items: int, sources: int) -> Iterator[slice]:
    """Slices of users whose score matrices, all the copies fusing holds, fit in
    SCORES_AT_ONCE."""
    users = max(1, SCORES_AT_ONCE // ((COPIES + COPIES_PER_SOURCE * sources) * items))
    for start in range(0, count, users):
        yield slice(start, start + users)


def fused_scorer(
    encoder: Scorer, similarities: dict[str, sparse.csr_matrix], fusion: Fusion
) -> Scorer:
    """A scorer of histories with the encoder's scores fused with `similarities` (by source
    name) as `fusion` says, a bounded batch of users at a time."""
    names = list(similarities)
    weights = [fusion.weights[name] for name in names]
    items = next(iter(similarities.values())).shape[0]

    def score(histories: list[np.ndarray]) -> np.ndarray:
        parts = []
        for users in _batches(len(histories), items, len(names)):
            batch = histories[users]
            recent = [
                recent_similarity(similarities[name], batch, fusion.window, fusion.decay)
                for name in names
            ]
            parts.append(fused(encoder(batch), recent, weights))
        return np.concatenate(parts)

    return score


def choose(
    encoder: Scorer,
    similarities: dict[str, sparse.csr_matrix],
    histories: list[np.ndarray],
    targets: np.ndarray,
) -> Fusion:
    """The weights (one per source, by name) and decay with the best NDCG@10 of `targets`
    (validation) after `histories`; each batch of users is scored by the encoder, and each
    score standardized, once for all the candidates."""
    names = list(similarities)
    items = next(iter(similarities.values())).shape[0]
    candidates = [
        (decay, weights)
        for decay in DECAYS
        for weights in itertools.product(WEIGHTS, repeat=len(names))
    ]
    found: dict[tuple[float, tuple[float, ...]], list[Positions]] = {c: [] for c in candidates}
    for users in _batches(len(histories), items, len(names)):
        batch = histories[users]
        scores = encoder(batch)
        kept = scores > EXCLUDED
        scores_z = standardized(scores, kept)
        for decay in DECAYS:
            recent_z = [
                standardized(recent_similarity(similarities[n], batch, WINDOW, decay), kept)
                for n in names
            ]
            for weights in itertools.product(WEIGHTS, repeat=len(names)):
                masked = mask_seen(_combined(scores, scores_z, recent_z, weights), batch)
                found[decay, weights].append(positions(masked, targets[users]))
    ndcg = {
        c: RankingMetrics.from_positions(Positions.concatenate(parts)).values["ndcg@10"]
        for c, parts in found.items()
    }
    # The first best in (decay, weights) order: a tie goes to the smaller decay, then the
    # smaller weights, so the encoder alone (all 0) wins a tie with any fusion.
    decay, weights = max(candidates, key=lambda c: ndcg[c])
    return Fusion(
        weights=dict(zip(names, weights, strict=True)),
        decay=decay,
        valid_ndcg10=ndcg[decay, weights],
    )
