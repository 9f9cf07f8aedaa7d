"""Score fusion of an encoder with item-to-item similarity over recent items
(evorec.evaluation.fusion), and the `<encoder>+cosine` models of the leave-one-out protocol."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import sparse

from evorec.baselines import ItemCosine
from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut
from evorec.evaluation import fusion
from evorec.evaluation.metrics import Scorer
from evorec.evaluation.protocol import evaluate
from tests.conftest import ROOT

# Four items (column 0 is padding); item 1 is like item 2, item 3 like item 4.
SIMILARITY = sparse.csr_matrix(
    np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 0, 1.0, 0, 0],
            [0, 1.0, 0, 0, 0.5],
            [0, 0, 0, 0, 1.0],
            [0, 0, 0.5, 1.0, 0],
        ]
    )
)


def test_recent_similarity_sums_the_newest_items_rows_with_decay() -> None:
    histories = [np.array([1, 2, 3]), np.array([4])]
    recent = fusion.recent_similarity(SIMILARITY, histories, window=2, decay=0.5)
    # User 0: row 3 (newest) + 0.5 * row 2; item 1 is outside the window of 2.
    np.testing.assert_allclose(recent[0], [0, 0.5, 0, 0, 1.25])
    np.testing.assert_allclose(recent[1], [0, 0, 0.5, 1.0, 0])


def test_standardized_rows_take_mean_and_deviation_over_the_kept_entries() -> None:
    scores = np.array([[-1e9, 1.0, 2.0, 3.0], [-1e9, 5.0, 5.0, 5.0]])
    z = fusion.standardized(scores, scores > fusion.EXCLUDED)
    np.testing.assert_allclose(z[0, 1:], [-np.sqrt(1.5), 0, np.sqrt(1.5)])
    np.testing.assert_allclose(z[1, 1:], [0, 0, 0])  # no spread: all equal, not NaN


def test_fused_scores_add_the_weighted_similarity_and_keep_excluded_items_last() -> None:
    encoder = np.array([[-1e9, 1.0, 2.0, 3.0]])
    similarity = np.array([[9.0, 3.0, 2.0, 1.0]])
    assert fusion.fused(encoder, similarity, 0.0) is encoder
    # Over items 1 to 3: z(encoder) = 1.22 * (-1, 0, 1), z(similarity) = 1.22 * (1, 0, -1).
    np.testing.assert_allclose(
        fusion.fused(encoder, similarity, 0.5), [[-1e9, *(np.sqrt(1.5) * np.array([-0.5, 0, 0.5]))]]
    )


def _scorer(table: np.ndarray) -> Scorer:
    return lambda histories: np.repeat(table[None], len(histories), axis=0)


def test_validation_chooses_the_fusion_when_similarity_finds_the_targets() -> None:
    # Each user's next item is the one most like their last; the encoder prefers item 4.
    histories = [np.array([1]), np.array([3])]
    targets = np.array([2, 4])
    blind = _scorer(np.array([-1e9, 0.0, 0.1, 0.0, 0.3]))
    chosen = fusion.choose(blind, SIMILARITY, histories, targets)
    assert chosen.weight > 0
    assert chosen.valid_ndcg10 == 1.0


def test_validation_refuses_a_fusion_that_does_not_help() -> None:
    histories = [np.array([1]), np.array([3])]
    targets = np.array([3, 1])  # never the similar item
    right = _scorer(np.array([-1e9, 0.5, 0.0, 0.5, 0.0]))
    assert fusion.choose(right, SIMILARITY, histories, targets).weight == 0.0


def test_a_fused_model_reuses_its_encoders_training_and_records_its_fusion(
    prepared: Path,
) -> None:
    layout = DatasetLayout(prepared)
    trained: list[tuple[str, int]] = []

    def train_encoder(name: str, seed: int, data: LeaveOneOut) -> tuple[Any, dict[str, Any]]:
        trained.append((name, seed))
        rng = np.random.default_rng(seed)
        table = rng.normal(size=data.n_items + 1)
        return _scorer(table), {"best_epoch": 1}

    results = evaluate(
        layout, ["transformer-text", "transformer-text+cosine"], [0, 1], train_encoder
    )
    assert trained == [("transformer-text", 0), ("transformer-text", 1)]
    plain, fused = results
    assert [t.get("fusion") for t in plain.training] == [None, None]
    choices = [t["fusion"] for t in fused.training]
    assert all(c["weight"] in fusion.WEIGHTS and c["decay"] in fusion.DECAYS for c in choices)
    # A random encoder gains from similarity on the simulated users' sessions.
    assert all(c["weight"] > 0 for c in choices)
    assert fused.runs[0]["ndcg@10"] > plain.runs[0]["ndcg@10"]


def test_only_an_encoder_can_be_fused_and_nothing_trains_before_the_refusal(
    prepared: Path,
) -> None:
    trained: list[str] = []

    def train_encoder(name: str, seed: int, data: LeaveOneOut) -> tuple[Any, dict[str, Any]]:
        trained.append(name)
        return _scorer(np.zeros(data.n_items + 1)), {}

    with pytest.raises(ValueError, match=r"item-cosine\+cosine: only an encoder can be fused"):
        evaluate(DatasetLayout(prepared), ["transformer", "item-cosine+cosine"], [0], train_encoder)
    assert trained == []


def test_the_fusion_is_chosen_on_the_validation_split_and_the_training_similarity(
    prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = LeaveOneOut.load(DatasetLayout(prepared))
    seen: list[tuple[Any, list[np.ndarray], np.ndarray]] = []
    choose = fusion.choose

    def spy(encoder: Any, similarity: Any, histories: Any, targets: Any) -> fusion.Fusion:
        seen.append((similarity, histories, targets))
        return choose(encoder, similarity, histories, targets)

    monkeypatch.setattr(fusion, "choose", spy)
    evaluate(
        DatasetLayout(prepared),
        ["transformer+cosine"],
        [0],
        lambda name, seed, d: (_scorer(np.zeros(d.n_items + 1)), {}),
    )
    ((similarity, histories, targets),) = seen
    np.testing.assert_array_equal(targets, data.valid_target)
    assert all(np.array_equal(h, t) for h, t in zip(histories, data.train, strict=True))
    # The similarity is the item-cosine baseline's, fitted on the training sequences alone.
    expected = ItemCosine(data.train, data.n_items).similarity
    assert (similarity != expected).nnz == 0


def test_fused_scores_do_not_depend_on_how_users_are_batched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    histories = [np.array([1, 2]), np.array([3]), np.array([4, 1, 2])]
    encoder = _scorer(np.array([0.0, 0.2, 0.1, 0.4, 0.3]))
    chosen = fusion.Fusion(weight=0.5, decay=0.7)
    whole = fusion.fused_scorer(encoder, SIMILARITY, chosen)(histories)
    monkeypatch.setattr(fusion, "SCORES_AT_ONCE", fusion.COPIES * 5)  # one user per batch
    np.testing.assert_array_equal(
        fusion.fused_scorer(encoder, SIMILARITY, chosen)(histories), whole
    )


def test_evaluate_refuses_a_fused_model_outside_leave_one_out(prepared: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "evorec", "evaluate", str(prepared), "--models",
         "transformer-text,transformer-text+cosine", "--protocols", "loo,cold-start"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "error: transformer-text+cosine: a fused model is scored under leave-one-out only" in (
        done.stderr
    )
    assert "seed 0" not in done.stdout, "nothing is trained before the refusal"
