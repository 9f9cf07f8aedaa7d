"""The comparison protocol behind `evorec evaluate`: every model on the same leave-one-out
split, ranked over all items with seen items excluded, over several seeds.

Models: `popular`, `item-cosine`, `markov` (baselines) and encoders named
`<kind>[-text]`, e.g. `transformer-text`, `transformer`, `gru-text`, `lstm`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evorec.baselines import ItemCosine, ItemMarkov, MostPopular, SequenceScorer
from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut
from evorec.evaluation.cold_start import ColdStart
from evorec.evaluation.evolution import Evolution
from evorec.evaluation.metrics import RankingMetrics, beyond_accuracy, mask_seen, positions, top_k
from evorec.evaluation.plots import plot_timelines
from evorec.evaluation.results import ModelResult

BASELINES: dict[str, Callable[[list[np.ndarray], int], SequenceScorer]] = {
    "popular": MostPopular,
    "item-cosine": ItemCosine,
    "markov": ItemMarkov,
}
ENCODERS = ("transformer-text", "transformer", "gru-text", "gru", "lstm-text", "lstm")


def test_metrics(scores: np.ndarray, data: LeaveOneOut, layout: DatasetLayout) -> dict[str, float]:
    """Test ranking metrics plus coverage, novelty and diversity of the top-10 lists."""
    histories = data.test_input
    masked = mask_seen(scores, histories)
    values = RankingMetrics.from_positions(positions(masked, data.test_target)).values
    popularity = np.bincount(np.concatenate(data.train), minlength=data.n_items + 1)
    values.update(
        beyond_accuracy(top_k(masked, 10), data.n_items, popularity, np.load(layout.item_vectors))
    )
    return values


Scorer = Callable[[list[np.ndarray]], np.ndarray]
# Trains the encoder `name` with `seed` on `data`; returns its scorer and training details.
TrainEncoder = Callable[[str, int, LeaveOneOut], tuple[Scorer, dict[str, Any]]]


def _runs(
    name: str,
    seeds: list[int],
    data: LeaveOneOut,
    train_encoder: TrainEncoder,
    progress: Callable[[str], None],
) -> list[tuple[Scorer, dict[str, Any]]]:
    """One scorer for a baseline (deterministic), one per seed for an encoder."""
    if name in BASELINES:
        progress(name)
        return [(BASELINES[name](data.train, data.n_items).score, {})]
    runs = []
    for seed in seeds:
        progress(f"{name}, seed {seed}")
        runs.append(train_encoder(name, seed, data))
    return runs


def evaluate(
    layout: DatasetLayout,
    models: list[str],
    seeds: list[int],
    train_encoder: TrainEncoder,
    progress: Callable[[str], None] = lambda message: None,
) -> list[ModelResult]:
    """Leave-one-out test metrics of each model, over `seeds` for the encoders."""
    data = LeaveOneOut.load(layout)
    results = []
    for name in models:
        result = ModelResult(name)
        for scorer, details in _runs(name, seeds, data, train_encoder, progress):
            result.runs.append(test_metrics(scorer(data.test_input), data, layout))
            if details:
                result.training.append(details)
        results.append(result)
    return results


def evaluate_cold_start(
    layout: DatasetLayout,
    models: list[str],
    seeds: list[int],
    train_encoder: TrainEncoder,
    progress: Callable[[str], None] = lambda message: None,
) -> list[ModelResult]:
    """Recall@10 and @20 of held-out (never trained on) items; see evaluation.cold_start."""
    split = ColdStart.load(layout)
    results = []
    for name in models:
        result = ModelResult(name)
        for scorer, _ in _runs(name, seeds, split.training, train_encoder, progress):
            scores = scorer(split.histories)
            result.runs.append({f"recall@{k}": split.recall(scores, k) for k in (10, 20)})
        results.append(result)
    return results


def evaluate_evolution(
    layout: DatasetLayout,
    encoders: list[str],
    seeds: list[int],
    train_encoder: TrainEncoder,
    progress: Callable[[str], None] = lambda message: None,
    timelines: Path | None = None,
) -> list[ModelResult]:
    """Predicted topic distributions of the next interactions, by the last window, a Markov
    chain over topics and each encoder (the last seed's); see evaluation.evolution. With
    `timelines`, a PNG of a few users' timelines and predictions is written there."""
    evolution = Evolution.load(layout)
    predictions = {"last-window": evolution.last_window(), "topic-markov": evolution.markov()}
    results = [ModelResult(name, [evolution.score(p)]) for name, p in predictions.items()]
    for name in encoders:
        result = ModelResult(name)
        for scorer, _ in _runs(name, seeds, evolution.training, train_encoder, progress):
            predictions[name] = evolution.from_item_scores(scorer(evolution.histories))
            result.runs.append(evolution.score(predictions[name]))
        results.append(result)
    if timelines is not None:
        plot_timelines(evolution.history_topics, evolution.futures, predictions, timelines)
    return results
