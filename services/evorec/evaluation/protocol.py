"""The comparison protocol behind `evorec evaluate`: every model on the same leave-one-out
split, ranked over all items with seen items excluded, over several seeds.

Models: `popular`, `item-cosine`, `markov` (baselines) and encoders named
`<kind>[-text]`, e.g. `transformer-text`, `transformer`, `gru-text`, `lstm`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evorec.data.artifacts import DatasetLayout
from evorec.encoder.baselines import ItemCosine, ItemMarkov, MostPopular, SequenceScorer
from evorec.evaluation.metrics import RankingMetrics, beyond_accuracy, mask_seen, ranks, top_k
from evorec.evaluation.sequences import LeaveOneOut

BASELINES: dict[str, Callable[[list[np.ndarray], int], SequenceScorer]] = {
    "popular": MostPopular,
    "item-cosine": ItemCosine,
    "markov": ItemMarkov,
}
ENCODERS = ("transformer-text", "transformer", "gru-text", "gru", "lstm-text", "lstm")


@dataclass
class ModelResult:
    """One model's test metrics per seed, and training details of encoders."""

    model: str
    runs: list[dict[str, float]] = field(default_factory=list)
    training: list[dict[str, Any]] = field(default_factory=list)

    def mean(self) -> dict[str, float]:
        return {k: statistics.fmean(r[k] for r in self.runs) for k in self.runs[0]}

    def spread(self) -> dict[str, float]:
        if len(self.runs) < 2:
            return {k: 0.0 for k in self.runs[0]}
        return {k: statistics.stdev(r[k] for r in self.runs) for k in self.runs[0]}


def test_metrics(scores: np.ndarray, data: LeaveOneOut, layout: DatasetLayout) -> dict[str, float]:
    """Test ranking metrics plus coverage, novelty and diversity of the top-10 lists."""
    histories = data.test_input
    masked = mask_seen(scores, histories)
    values = RankingMetrics.from_ranks(ranks(masked, data.test_target)).values
    popularity = np.bincount(np.concatenate(data.train), minlength=data.n_items + 1)
    values.update(
        beyond_accuracy(top_k(masked, 10), data.n_items, popularity, np.load(layout.item_vectors))
    )
    return values


def evaluate(
    layout: DatasetLayout,
    models: list[str],
    seeds: list[int],
    train_encoder: Callable[[str, int, LeaveOneOut], tuple[np.ndarray, dict[str, Any]]],
    progress: Callable[[str], None] = lambda message: None,
) -> list[ModelResult]:
    """Runs each model once per seed (baselines once: they are deterministic).
    `train_encoder(name, seed, data)` returns test scores and training details."""
    data = LeaveOneOut.load(layout)
    results = []
    for name in models:
        result = ModelResult(name)
        if name in BASELINES:
            progress(name)
            scores = BASELINES[name](data.train, data.n_items).score(data.test_input)
            result.runs.append(test_metrics(scores, data, layout))
        else:
            for seed in seeds:
                progress(f"{name}, seed {seed}")
                scores, details = train_encoder(name, seed, data)
                result.runs.append(test_metrics(scores, data, layout))
                result.training.append(details)
        results.append(result)
    return results


TABLE_METRICS = ("ndcg@10", "hr@10", "ndcg@5", "hr@5", "ndcg@20", "hr@20", "mrr")
TABLE_EXTRAS = ("coverage", "diversity", "novelty")


def as_table(results: list[ModelResult]) -> pd.DataFrame:
    """Mean (and, over several seeds, ± standard deviation) of each metric per model."""
    rows = []
    for result in results:
        mean, spread = result.mean(), result.spread()
        row: dict[str, object] = {"model": result.model, "seeds": len(result.runs)}
        for key in (*TABLE_METRICS, *TABLE_EXTRAS):
            if key in mean:
                several = len(result.runs) > 1
                row[key] = f"{mean[key]:.4f} ± {spread[key]:.4f}" if several else f"{mean[key]:.4f}"
        rows.append(row)
    return pd.DataFrame(rows)
