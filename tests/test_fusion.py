"""Score fusion of an encoder with item-to-item similarity over recent items
(evorec.evaluation.fusion), and the `<encoder>+<source>` models of the leave-one-out
protocol."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import sparse

from evorec.baselines import ItemCoOccurrence, ItemCosine
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
    assert fusion.fused(encoder, [similarity], [0.0]) is encoder
    # Over items 1 to 3: z(encoder) = 1.22 * (-1, 0, 1), z(similarity) = 1.22 * (1, 0, -1).
    np.testing.assert_allclose(
        fusion.fused(encoder, [similarity], [0.5]),
        [[-1e9, *(np.sqrt(1.5) * np.array([-0.5, 0, 0.5]))]],
    )


def test_each_source_adds_its_own_weighted_similarity() -> None:
    encoder = np.array([[-1e9, 1.0, 2.0, 3.0]])  # z = 1.22 * (-1, 0, 1)
    first = np.array([[0.0, 3.0, 2.0, 1.0]])  # z = 1.22 * (1, 0, -1)
    second = np.array([[0.0, 1.0, 1.0, 4.0]])  # z = 0.71 * (-1, -1, 2)
    encoder_z = np.sqrt(1.5) * np.array([-1, 0, 1])
    second_z = np.sqrt(0.5) * np.array([-1, -1, 2])
    np.testing.assert_allclose(
        fusion.fused(encoder, [first, second], [0.0, 1.0]), [[-1e9, *(encoder_z + second_z)]]
    )
    # The first source, at weight 1, cancels the encoder: the second alone is left.
    np.testing.assert_allclose(
        fusion.fused(encoder, [first, second], [1.0, 1.0]), [[-1e9, *second_z]], atol=1e-12
    )


def _scorer(table: np.ndarray) -> Scorer:
    return lambda histories: np.repeat(table[None], len(histories), axis=0)


def test_validation_chooses_the_fusion_when_similarity_finds_the_targets() -> None:
    # Each user's next item is the one most like their last; the encoder prefers item 4.
    histories = [np.array([1]), np.array([3])]
    targets = np.array([2, 4])
    blind = _scorer(np.array([-1e9, 0.0, 0.1, 0.0, 0.3]))
    chosen = fusion.choose(blind, {"cosine": SIMILARITY}, histories, targets)
    assert chosen.weights["cosine"] > 0
    assert chosen.valid_ndcg10 == 1.0


def test_validation_weighs_only_the_source_that_finds_the_targets() -> None:
    histories = [np.array([1]), np.array([3])]
    targets = np.array([2, 4])
    # A source that points each last item at the wrong one (1 -> 4, 3 -> 2).
    misleading = sparse.csr_matrix(
        np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 1.0], [0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0],
                  [0, 0, 0, 0, 0]])
    )  # fmt: skip
    blind = _scorer(np.array([-1e9, 0.0, 0.1, 0.0, 0.3]))
    chosen = fusion.choose(blind, {"wrong": misleading, "cosine": SIMILARITY}, histories, targets)
    assert chosen.weights["wrong"] == 0.0
    assert chosen.weights["cosine"] > 0
    assert chosen.valid_ndcg10 == 1.0


def test_validation_refuses_a_fusion_that_does_not_help() -> None:
    histories = [np.array([1]), np.array([3])]
    targets = np.array([3, 1])  # never the similar item
    right = _scorer(np.array([-1e9, 0.5, 0.0, 0.5, 0.0]))
    assert fusion.choose(right, {"cosine": SIMILARITY}, histories, targets).weights == {
        "cosine": 0.0
    }


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
    assert all(
        c["weights"]["cosine"] in fusion.WEIGHTS and c["decay"] in fusion.DECAYS for c in choices
    )
    # A random encoder gains from similarity on the simulated users' sessions.
    assert all(c["weights"]["cosine"] > 0 for c in choices)
    assert fused.runs[0]["ndcg@10"] > plain.runs[0]["ndcg@10"]


def test_an_encoder_trains_once_for_all_its_models_even_when_a_name_repeats(
    prepared: Path,
) -> None:
    trained: list[str] = []

    def train_encoder(name: str, seed: int, data: LeaveOneOut) -> tuple[Any, dict[str, Any]]:
        trained.append(name)
        return _scorer(np.random.default_rng(seed).normal(size=data.n_items + 1)), {}

    models = ["transformer", "transformer+cooccurrence", "transformer", "transformer+cosine"]
    results = evaluate(DatasetLayout(prepared), models, [0], train_encoder)
    assert trained == ["transformer"]
    assert [r.model for r in results] == models


def test_a_model_fused_with_two_sources_records_a_weight_for_each(prepared: Path) -> None:
    def train_encoder(name: str, seed: int, data: LeaveOneOut) -> tuple[Any, dict[str, Any]]:
        return _scorer(np.random.default_rng(seed).normal(size=data.n_items + 1)), {}

    (fused,) = evaluate(
        DatasetLayout(prepared), ["transformer+cosine+cooccurrence"], [0], train_encoder
    )
    (choice,) = [t["fusion"] for t in fused.training]
    assert set(choice["weights"]) == {"cosine", "cooccurrence"}
    assert any(w > 0 for w in choice["weights"].values())


@pytest.mark.parametrize(
    "name", ["transformer+jaccard", "transformer+cosine+cosine", "transformer+"]
)
def test_an_unknown_or_repeated_source_is_refused_before_anything_trains(
    prepared: Path, name: str
) -> None:
    trained: list[str] = []

    def train_encoder(name: str, seed: int, data: LeaveOneOut) -> tuple[Any, dict[str, Any]]:
        trained.append(name)
        return _scorer(np.zeros(data.n_items + 1)), {}

    with pytest.raises(ValueError, match="fuse an encoder with cosine, cooccurrence"):
        evaluate(DatasetLayout(prepared), ["transformer", name], [0], train_encoder)
    assert trained == []


def test_cooccurrence_counts_items_within_the_window_both_ways_and_normalizes() -> None:
    # Items 1 2 3 in one sequence, 3 1 in another; a window of 1 pairs neighbours only.
    found = ItemCoOccurrence([np.array([1, 2, 3]), np.array([3, 1])], 3, window=1)
    # Pairs: 1-2, 2-3, 3-1, each counted both ways; every item is in 2 pairs.
    np.testing.assert_allclose(
        found.similarity.toarray(),
        [[0, 0, 0, 0], [0, 0, 0.5, 0.5], [0, 0.5, 0, 0.5], [0, 0.5, 0.5, 0]],
    )
    # A window of 2 adds 1-3 of the first sequence: 1 and 3 are twice together, and in 3
    # pairs each; 2 is in 2.
    wider = ItemCoOccurrence([np.array([1, 2, 3]), np.array([3, 1])], 3, window=2)
    np.testing.assert_allclose(
        wider.score([np.array([2, 1])])[0], [0, 0, 1 / np.sqrt(3 * 2), 2 / np.sqrt(3 * 3)]
    )


def test_cooccurrence_pairs_never_cross_users_and_an_item_is_not_its_own_neighbour() -> None:
    found = ItemCoOccurrence([np.array([1, 1]), np.array([2])], 2)
    np.testing.assert_array_equal(found.similarity.toarray(), np.zeros((3, 3)))


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

    def spy(encoder: Any, similarities: Any, histories: Any, targets: Any) -> fusion.Fusion:
        seen.append((similarities, histories, targets))
        return choose(encoder, similarities, histories, targets)

    monkeypatch.setattr(fusion, "choose", spy)
    evaluate(
        DatasetLayout(prepared),
        ["transformer+cosine"],
        [0],
        lambda name, seed, d: (_scorer(np.zeros(d.n_items + 1)), {}),
    )
    ((similarities, histories, targets),) = seen
    np.testing.assert_array_equal(targets, data.valid_target)
    assert all(np.array_equal(h, t) for h, t in zip(histories, data.train, strict=True))
    # The similarity is the item-cosine baseline's, fitted on the training sequences alone.
    expected = ItemCosine(data.train, data.n_items).similarity
    assert list(similarities) == ["cosine"]
    assert (similarities["cosine"] != expected).nnz == 0


def test_fused_scores_do_not_depend_on_how_users_are_batched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    histories = [np.array([1, 2]), np.array([3]), np.array([4, 1, 2])]
    encoder = _scorer(np.array([0.0, 0.2, 0.1, 0.4, 0.3]))
    sources = {"cosine": SIMILARITY, "other": SIMILARITY.T.tocsr()}
    chosen = fusion.Fusion(weights={"cosine": 0.5, "other": 0.2}, decay=0.7)
    whole = fusion.fused_scorer(encoder, sources, chosen)(histories)
    monkeypatch.setattr(fusion, "SCORES_AT_ONCE", fusion.COPIES * 5)  # one user per batch
    np.testing.assert_array_equal(fusion.fused_scorer(encoder, sources, chosen)(histories), whole)


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
