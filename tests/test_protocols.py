"""The cold-start and interest-evolution protocols on the small simulated dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from evorec.baselines import MostPopular
from evorec.data.artifacts import DatasetLayout
from evorec.evaluation.cold_start import ColdStart
from evorec.evaluation.evolution import Evolution
from evorec.evaluation.ground_truth import SimulatorTruth
from evorec.evaluation.protocol import evaluate_evolution
from evorec.topic_distributions import normalized


def test_cold_start_holds_items_out_of_training(prepared: Path) -> None:
    layout = DatasetLayout(prepared)
    split = ColdStart.load(layout)
    events = pd.read_parquet(layout.events)
    held = set(events.loc[events["split_new_item"] == "test", "item_index"])
    assert set(split.candidates.tolist()) == held
    assert not held & set(np.concatenate(split.training.train).tolist())
    assert not held & set(np.concatenate(split.histories).tolist())
    assert set(split.targets.tolist()) <= held


def test_cold_start_recall_of_a_perfect_and_of_a_blind_model(prepared: Path) -> None:
    split = ColdStart.load(DatasetLayout(prepared))
    perfect = np.zeros((len(split.targets), split.training.n_items + 1))
    perfect[np.arange(len(split.targets)), split.targets] = 1.0
    assert split.recall(perfect, 10) == 1.0
    # Popularity has never counted a held-out item: every trained item ranks above it.
    blind = MostPopular(split.training.train, split.training.n_items).score(split.histories)
    assert split.recall(blind, 20) == 0.0


def test_evolution_scores_predictions_against_the_next_topics(prepared: Path) -> None:
    evolution = Evolution.load(DatasetLayout(prepared))
    assert len(evolution.histories) == len(evolution.futures) > 0
    actual = [normalized(Counter(f)) for f in evolution.futures]
    assert evolution.score(actual) == {
        "js_divergence": 0.0,
        "top_topic_accuracy": 1.0,
        "empty_predictions": 0.0,
    }
    window = evolution.score(evolution.last_window())
    assert 0 < window["js_divergence"] < 1
    assert all(abs(sum(p.values()) - 1) < 1e-9 for p in evolution.markov())


def test_an_encoders_item_scores_become_a_topic_distribution(prepared: Path) -> None:
    evolution = Evolution.load(DatasetLayout(prepared))
    scores = np.zeros((1, len(evolution.item_topics)))
    scores[0, 1] = 50.0  # all but certain of item 1
    (prediction,) = evolution.from_item_scores(scores)
    assert max(prediction, key=lambda t: prediction[t]) == evolution.item_topics[1]
    assert prediction[evolution.item_topics[1]] > 0.99


def test_the_hidden_markov_forecast_covers_every_user(prepared: Path) -> None:
    evolution = Evolution.load(DatasetLayout(prepared))
    forecasts = evolution.hidden_markov()
    assert len(forecasts) == len(evolution.histories)
    assert all(abs(sum(p.values()) - 1) < 1e-9 for p in forecasts)
    assert evolution.score(forecasts)["empty_predictions"] == 0


def test_the_simulators_truth_maps_topics_and_kinds(prepared: Path, synthetic_raw: Path) -> None:
    layout = DatasetLayout(prepared)
    evolution = Evolution.load(layout)
    truth = SimulatorTruth.load(synthetic_raw, layout)
    kinds = truth.kinds(evolution.user_ids)
    assert set(kinds) <= {"stable", "gradual", "sudden", "periodic"}
    assert sorted(i for where in kinds.values() for i in where) == list(
        range(len(evolution.user_ids))
    )
    # The simulated items' text clusters into their true topics: each prepared topic is one.
    for topic, shares in truth.topic_map.items():
        assert shares.max() > 0.9
        mapped = truth.mapped({topic: 1.0})
        assert max(mapped.values()) == pytest.approx(shares.max())
    actual = truth.actual(evolution.future_lines[0])
    assert sum(actual.values()) == pytest.approx(1)
    assert truth.mapped({}) == {}


def test_evolution_scores_every_method_per_kind_against_the_truth(
    prepared: Path, synthetic_raw: Path
) -> None:
    def no_encoder(name: str, seed: int, data: object) -> tuple[Any, dict[str, Any]]:
        raise AssertionError("no encoder was asked for")

    results = evaluate_evolution(DatasetLayout(prepared), [], [0], no_encoder, truth=synthetic_raw)
    names = [r.model for r in results]
    assert names[:3] == ["last-window", "topic-markov", "hidden-markov"]
    kinds = {name.split(" / ")[1] for name in names[3:]}
    assert len(names) == 3 + 3 * len(kinds)
    users = sum(r.runs[0]["users"] for r in results[3:] if r.model.startswith("last-window"))
    assert users == len(Evolution.load(DatasetLayout(prepared)).histories)
