"""What export stores about interest evolution, read back from the small exported model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evorec.encoder.bundle import BUNDLE_DIR, ModelBundle
from evorec.evolution import methods
from evorec.evolution.track_record import EvolutionModel, band


def test_export_stores_the_hmm_and_each_methods_track_record(
    model_base: Path,
) -> None:
    bundle = ModelBundle.load(model_base / "encoder" / "1")
    evolution = bundle.evolution
    assert evolution is not None
    assert evolution.hmm is not None
    assert set(evolution.hmm.topics) == {t for t in bundle.topic_ids if t}
    assert evolution.hmm.n_states in evolution.hmm.selection
    assert set(evolution.scores) == set(methods.METHODS)
    for by_band in evolution.scores.values():
        overall = by_band["all"]
        assert 0 <= overall["js_divergence"] <= 1
        assert 0 <= overall["top_topic_accuracy"] <= 1
        # The simulated users all have 5 or more events: one score per user of the split.
        assert overall["users"] == sum(s["users"] for b, s in by_band.items() if b != "all")
    assert evolution.recommended(30, methods.METHODS) in methods.METHODS


def test_an_older_export_has_no_evolution_part(model_base: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    folder.mkdir()
    assert EvolutionModel.load(folder) is None
    assert (model_base / "encoder" / "1" / BUNDLE_DIR / "evolution.json").exists()


def test_a_missing_hmm_is_none_and_the_others_still_recommend(
    model_base: Path, tmp_path: Path
) -> None:
    source = model_base / "encoder" / "1" / BUNDLE_DIR / "evolution.json"
    (tmp_path / "evolution.json").write_text(source.read_text())
    evolution = EvolutionModel.load(tmp_path)
    assert evolution is not None
    assert evolution.hmm is None
    assert evolution.recommended(30, [methods.LAST_WINDOW]) == methods.LAST_WINDOW


@pytest.mark.parametrize(
    ("length", "expected"), [(0, "0"), (1, "1-9"), (9, "1-9"), (10, "10-49"), (50, "50+")]
)
def test_history_bands(length: int, expected: str) -> None:
    assert band(length) == expected


def test_the_recommendation_is_the_lowest_divergence_in_the_band() -> None:
    def scored(js: float, users: float) -> dict[str, float]:
        return {"js_divergence": js, "top_topic_accuracy": 0.5, "users": users}

    evolution = EvolutionModel(
        scores={
            methods.LAST_WINDOW: {"all": scored(0.3, 100), "1-9": scored(0.1, 40)},
            methods.ENCODER: {"all": scored(0.2, 100), "1-9": scored(0.4, 40)},
            methods.TOPIC_MARKOV: {"all": scored(0.25, 100), "10-49": scored(0.05, 3)},
        },
        hmm=None,
    )
    assert evolution.recommended(5, methods.METHODS) == methods.LAST_WINDOW
    # Too few users in the 10-49 band: the overall scores decide.
    assert evolution.recommended(20, methods.METHODS) == methods.ENCODER
    assert evolution.recommended(20, [methods.TOPIC_MARKOV]) == methods.TOPIC_MARKOV
    assert json.loads(json.dumps(evolution.scores)) == evolution.scores
