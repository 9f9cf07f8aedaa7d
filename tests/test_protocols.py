"""The cold-start and interest-evolution protocols on the small simulated dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from evorec.baselines import MostPopular
from evorec.data.artifacts import DatasetLayout
from evorec.evaluation.cold_start import ColdStart
from evorec.evaluation.evolution import Evolution
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
