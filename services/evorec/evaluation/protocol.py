"""The comparison protocol behind `evorec evaluate`: every model on the same leave-one-out
split, ranked over all items with seen items excluded, over several seeds.

Models: `popular`, `item-cosine`, `item-cooccurrence`, `markov` (baselines), encoders named
`<kind>[-text]`, e.g. `transformer-text`, `transformer`, `gru-text`, `lstm`, and under
leave-one-out an encoder fused with item-to-item similarity from one or more sources,
`<encoder>+<source>[+<source>]` with sources `cosine` and `cooccurrence` (see
evaluation.fusion), e.g. `transformer-text+cosine+cooccurrence`: the same trained encoder as
`<encoder>` when both are asked for, so that the rows differ by the fusion only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from evorec.baselines import (
    ItemCoOccurrence,
    ItemCosine,
    ItemMarkov,
    MostPopular,
    SequenceScorer,
)
from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut
from evorec.evaluation import fusion
from evorec.evaluation.cold_start import ColdStart
from evorec.evaluation.evolution import Evolution
from evorec.evaluation.ground_truth import SimulatorTruth
from evorec.evaluation.metrics import (
    Positions,
    RankingMetrics,
    Scorer,
    beyond_accuracy,
    masked_batches,
    positions,
    top_k,
)
from evorec.evaluation.plots import plot_timelines
from evorec.evaluation.results import ModelResult
from evorec.evolution import methods
from evorec.topic_distributions import Distribution

BASELINES: dict[str, Callable[[list[np.ndarray], int], SequenceScorer]] = {
    "popular": MostPopular,
    "item-cosine": ItemCosine,
    "item-cooccurrence": ItemCoOccurrence,
    "markov": ItemMarkov,
}
ENCODERS = ("transformer-text", "transformer", "gru-text", "gru", "lstm-text", "lstm")
# The similarity sources an encoder can be fused with: `<encoder>+<source>[+<source>]`.
FUSION_SOURCES: dict[str, Callable[[list[np.ndarray], int], ItemCosine | ItemCoOccurrence]] = {
    "cosine": ItemCosine,
    "cooccurrence": ItemCoOccurrence,
}


def fusion_parts(name: str) -> tuple[str, list[str]]:
    """The model `name` read as its encoder (or baseline) and the sources it is fused with
    (none for a model that is not fused); a source that is not one of FUSION_SOURCES, or one
    named twice, is refused."""
    model, *sources = name.split("+")
    unknown = [s for s in sources if s not in FUSION_SOURCES]
    if unknown or len(set(sources)) < len(sources):
        raise ValueError(
            f"{name}: fuse an encoder with {', '.join(FUSION_SOURCES)}, each at most once "
            "(`<encoder>+<source>[+<source>]`)"
        )
    return model, sources


def test_metrics(score: Scorer, data: LeaveOneOut, layout: DatasetLayout) -> dict[str, float]:
    """Test ranking metrics plus coverage, novelty and diversity of the top-10 lists; the
    users are scored a batch at a time (masked_batches)."""
    found, tops = [], []
    for users, masked in masked_batches(score, data.test_input, data.n_items + 1):
        found.append(positions(masked, data.test_target[users]))
        tops.append(top_k(masked, 10))
    values = RankingMetrics.from_positions(Positions.concatenate(found)).values
    popularity = np.bincount(np.concatenate(data.train), minlength=data.n_items + 1)
    values.update(
        beyond_accuracy(
            np.concatenate(tops), data.n_items, popularity, np.load(layout.item_vectors)
        )
    )
    return values


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
    """Leave-one-out test metrics of each model, over `seeds` for the encoders; an
    `<encoder>+<source>...` fuses each run of `<encoder>` (trained once for all its models)
    with item-to-item similarity from those sources, the weights and decay chosen on the
    validation split."""
    parts = {name: fusion_parts(name) for name in models}
    unfusable = [n for n, (model, sources) in parts.items() if sources and model in BASELINES]
    if unfusable:
        raise ValueError(f"{', '.join(unfusable)}: only an encoder can be fused, not a baseline")
    data = LeaveOneOut.load(layout)
    # Each encoder's runs, kept until the last model that uses them is scored.
    trained: dict[str, list[tuple[Scorer, dict[str, Any]]]] = {}
    uses = Counter(parts[name][0] for name in models)
    similarities: dict[str, sparse.csr_matrix] = {}
    results = []
    for name in models:
        encoder, sources = parts[name]
        if encoder not in trained:
            trained[encoder] = _runs(encoder, seeds, data, train_encoder, progress)
        runs = trained[encoder]
        if sources:
            for source in sources:
                if source not in similarities:
                    fitted = FUSION_SOURCES[source](data.train, data.n_items)
                    similarities[source] = fitted.similarity
            chosen = {source: similarities[source] for source in sources}
            runs = [_fused(scorer, details, chosen, data) for scorer, details in runs]
        result = ModelResult(name)
        for scorer, details in runs:
            result.runs.append(test_metrics(scorer, data, layout))
            if details:
                result.training.append(details)
        results.append(result)
        uses[encoder] -= 1
        if not uses[encoder]:
            del trained[encoder]
    return results


def _fused(
    scorer: Scorer,
    details: dict[str, Any],
    similarities: dict[str, sparse.csr_matrix],
    data: LeaveOneOut,
) -> tuple[Scorer, dict[str, Any]]:
    """The run's scorer fused with `similarities`, as chosen on validation; the choice is
    recorded in its details."""
    chosen = fusion.choose(scorer, similarities, data.valid_input, data.valid_target)
    fused = fusion.fused_scorer(scorer, similarities, chosen)
    return fused, {**details, "fusion": asdict(chosen)}


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
    truth: Path | None = None,
) -> list[ModelResult]:
    """Predicted topic distributions of the next interactions, by the last window, the topic
    Markov chain, the hidden Markov model and each encoder (the last seed's for the plot);
    see evaluation.evolution. Each is scored against what users did next; with `truth` (the
    folder of simulated data that `layout` was prepared from), also per kind of user against
    the simulator's ground truth (rows `<method> / <kind> / truth`). With `timelines`, a PNG
    of a few users' timelines and predictions is written there."""
    evolution = Evolution.load(layout)
    progress("hidden Markov model")
    predictions = {
        "last-window": evolution.last_window(),
        "topic-markov": evolution.markov(),
        "hidden-markov": evolution.hidden_markov(),
    }
    results = [ModelResult(name, [evolution.score(p)]) for name, p in predictions.items()]
    runs: dict[str, list[list[Distribution]]] = {}
    for name in encoders:
        result = ModelResult(name)
        for scorer, _ in _runs(name, seeds, evolution.training, train_encoder, progress):
            predictions[name] = evolution.encoder(scorer(evolution.histories))
            runs.setdefault(name, []).append(predictions[name])
            result.runs.append(evolution.score(predictions[name]))
        results.append(result)
    if truth is not None:
        results += _against_truth(evolution, SimulatorTruth.load(truth, layout), predictions, runs)
    if timelines is not None:
        plot_timelines(evolution.history_topics, evolution.futures, predictions, timelines)
    return results


def _against_truth(
    evolution: Evolution,
    truth: SimulatorTruth,
    predictions: dict[str, list[Distribution]],
    runs: dict[str, list[list[Distribution]]],
) -> list[ModelResult]:
    """Each method per kind of simulated user, against the mean true preference over the
    forecast events (every seed of an encoder)."""
    actual = [truth.actual(lines) for lines in evolution.future_lines]
    results = []
    for kind, where in sorted(truth.kinds(evolution.user_ids).items()):
        for name, forecast in predictions.items():
            result = ModelResult(f"{name} / {kind} / truth")
            for run in runs.get(name, [forecast]):
                result.runs.append(
                    {
                        **methods.score(
                            [truth.mapped(run[i]) for i in where], [actual[i] for i in where]
                        ),
                        "users": float(len(where)),
                    }
                )
            results.append(result)
    return results
