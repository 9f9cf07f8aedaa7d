"""Metrics and baselines on small inputs with values worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from evorec import baselines
from evorec.baselines import ItemCosine, ItemMarkov, MostPopular, row_blocks, top_per_row
from evorec.data.artifacts import DatasetLayout
from evorec.data.readers import read_dataset
from evorec.data.sequences import LeaveOneOut
from evorec.data.splits import leave_one_out
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.evaluation import metrics
from evorec.evaluation.cold_start import ColdStart
from evorec.evaluation.evolution import Evolution
from evorec.evaluation.metrics import (
    Positions,
    RankingMetrics,
    beyond_accuracy,
    catalog_positions,
    mask_seen,
    positions,
    top_k,
)
from evorec.model_cli import fit_encoder
from evorec.preparation import PrepareOptions, prepare
from tests.conftest import SYNTH


def test_ranks_count_items_scored_above_the_target_after_masking() -> None:
    scores = np.array([[9.0, 0.5, 0.9, 0.1, 0.7], [9.0, 0.2, 0.3, 0.4, 0.1]])
    masked = mask_seen(scores, [np.array([2]), np.array([], dtype=np.int64)])
    # User 0: item 2 (0.9) is seen, padding is out: 0.7 (item 4) beats target item 1 (0.5).
    found = positions(masked, np.array([1, 1]))
    assert found.above.tolist() == [1, 2]
    assert found.tied.tolist() == [0, 0]


def test_ties_are_broken_at_random_in_expectation() -> None:
    # Nine items above the target, three tied with it: it takes place 10, 11, 12 or 13.
    scores = np.array([[-np.inf, *([1.0] * 9), 0.0, 0.0, 0.0, 0.0]])
    values = RankingMetrics.from_positions(positions(scores, np.array([10]))).values
    assert values["hr@10"] == pytest.approx(1 / 4)
    assert values["hr@20"] == 1.0
    assert values["ndcg@10"] == pytest.approx(1 / math.log2(11) / 4)
    assert values["mrr"] == pytest.approx((1 / 10 + 1 / 11 + 1 / 12 + 1 / 13) / 4)


def test_catalog_positions_score_a_bounded_batch_of_users_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same figures as scoring every user at once, with at most SCORES_AT_ONCE scores
    asked for in one call (at a million items, all users at once would not fit)."""
    rng = np.random.default_rng(0)
    table = rng.normal(size=(6, 2))  # items 1..5 and padding; scores tie only by chance
    histories = [rng.choice(np.arange(1, 6), size=n, replace=False) for n in (1, 2, 0, 3, 1)]
    targets = np.array([5, 1, 2, 4, 3])

    def score(batch: list[np.ndarray]) -> np.ndarray:
        asked.append(len(batch))
        return np.array([table[h].sum(axis=0) if len(h) else np.ones(2) for h in batch]) @ table.T

    asked: list[int] = []
    at_once = positions(mask_seen(score(histories), histories), targets)
    assert at_once.above.sum() > 0  # targets that land at different places
    monkeypatch.setattr(metrics, "SCORES_AT_ONCE", 12)  # two users of 6 columns
    asked.clear()
    batched = catalog_positions(score, histories, targets, columns=6)
    assert asked == [2, 2, 1]
    assert batched.above.tolist() == at_once.above.tolist()
    assert batched.tied.tolist() == at_once.tied.tolist()


def test_hit_rate_ndcg_and_mrr() -> None:
    # Targets at places 1, 3, 11 and 30, no ties.
    found = Positions(above=np.array([0, 2, 10, 29]), tied=np.zeros(4, dtype=int))
    values = RankingMetrics.from_positions(found).values
    assert values["hr@5"] == 0.5
    assert values["hr@20"] == 0.75
    assert values["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert values["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 11 + 1 / 30) / 4)


def test_top_k_is_best_first() -> None:
    assert top_k(np.array([[0.1, 0.9, 0.5, 0.7]]), 3).tolist() == [[1, 3, 2]]


def test_beyond_accuracy() -> None:
    lists = np.array([[1, 2], [1, 3]])
    popularity = np.array([0, 6, 1, 1])
    vectors = np.array([[0, 0], [1, 0], [1, 0], [0, 1]], dtype=float)
    values = beyond_accuracy(lists, n_items=3, popularity=popularity, text_vectors=vectors)
    assert values["coverage"] == 1.0
    assert values["novelty"] == pytest.approx(np.mean([-math.log2(6 / 8), -math.log2(1 / 8)] * 2))
    assert values["diversity"] == pytest.approx(0.5)  # identical pair 0, orthogonal pair 1


def test_leave_one_out_sequences() -> None:
    events = pd.DataFrame(
        {"user_index": [0, 0, 0, 0, 1, 1, 2, 2, 2], "item_index": [1, 2, 3, 4, 1, 2, 3, 1, 2],
         "timestamp": [1, 2, 3, 4, 1, 2, 1, 2, 3]}
    )  # fmt: skip
    loo = LeaveOneOut.from_events(events, n_items=4)
    assert [s.tolist() for s in loo.train] == [[1, 2], [3]]  # user 1 has too few events
    assert loo.valid_target.tolist() == [3, 1]
    assert loo.test_target.tolist() == [4, 2]
    assert [s.tolist() for s in loo.test_input] == [[1, 2, 3], [3, 1]]


def test_leave_one_out_follows_the_stored_labels() -> None:
    events = pd.DataFrame(
        {"user_index": [0, 0, 0, 0, 1, 1, 1], "item_index": [1, 2, 3, 4, 1, 2, 3],
         "timestamp": [1, 2, 3, 4, 1, 2, 3]}
    )  # fmt: skip
    computed = LeaveOneOut.from_events(events, n_items=4)
    stored = LeaveOneOut.from_events(events, n_items=4, labels=leave_one_out(events))
    assert [s.tolist() for s in stored.train] == [s.tolist() for s in computed.train]
    assert stored.test_target.tolist() == computed.test_target.tolist() == [4, 3]
    # Labels say what is held out: here user 1's last two events are both validation/test.
    labels = pd.Series(["train", "train", "valid", "test", "train", "test", "valid"])
    relabelled = LeaveOneOut.from_events(events, n_items=4, labels=labels)
    assert relabelled.valid_target.tolist() == [3, 3]
    assert relabelled.test_target.tolist() == [4, 2]


SEQUENCES = [np.array([1, 2, 3]), np.array([1, 2]), np.array([2, 3])]


def test_most_popular_counts_training_items() -> None:
    assert MostPopular(SEQUENCES, 3).score([np.array([1])]).tolist() == [[0, 2, 3, 2]]


def test_markov_follows_the_last_item() -> None:
    # 1 -> 2 twice; 2 -> 3 twice (of 2 transitions from item 2).
    scores = ItemMarkov(SEQUENCES, 3).score([np.array([3, 1]), np.array([2])])
    assert scores.tolist() == [[0, 0, 1, 0], [0, 0, 0, 1]]


def test_item_cosine_scores_from_the_last_item() -> None:
    scores = ItemCosine(SEQUENCES, 3).score([np.array([1])])[0]
    # Users of item 1: {0, 1}; of 2: {0, 1, 2}; of 3: {0, 2}.
    assert scores[1] == 0  # not similar to itself
    assert scores[2] == pytest.approx(2 / math.sqrt(2 * 3))
    assert scores[3] == pytest.approx(1 / math.sqrt(2 * 2))


def test_top_per_row_keeps_the_largest_positive_entries_lower_column_first_on_ties() -> None:
    matrix = sparse.csr_matrix(
        np.array([[0.0, 0.5, 0.9, 0.5, 0.1], [0.0, -1.0, 0.0, 0.2, 0.0], [0.0] * 5])
    )
    kept = top_per_row(matrix, 2).toarray()
    assert kept.tolist() == [
        [0, 0.5, pytest.approx(0.9), 0, 0],  # 0.5 at column 1 beats 0.5 at column 3
        [0, 0, 0, pytest.approx(0.2), 0],  # negative entries are never kept
        [0, 0, 0, 0, 0],
    ]


def test_row_blocks_stay_within_the_budget_and_a_costly_row_stands_alone() -> None:
    assert row_blocks(np.array([3, 3, 3, 3]), budget=6) == [(0, 2), (2, 4)]
    assert row_blocks(np.array([1, 9, 1, 1]), budget=5) == [(0, 1), (1, 2), (2, 4)]
    assert row_blocks(np.array([], dtype=np.int64), budget=5) == []


def test_item_cosine_neighbours_block_by_block_equal_the_whole_similarity_pruned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(7)
    sequences = [rng.choice(np.arange(1, 41), size=rng.integers(2, 12)) for _ in range(60)]
    whole = ItemCosine(sequences, 40).similarity
    monkeypatch.setattr(baselines, "CO_OCCURRENCES_AT_ONCE", 50)
    blocks: list[tuple[int, int]] = []

    def recorded_blocks(cost: np.ndarray, budget: int) -> list[tuple[int, int]]:
        blocks.extend(row_blocks(cost, budget))
        return blocks

    monkeypatch.setattr(baselines, "row_blocks", recorded_blocks)
    pruned = ItemCosine(sequences, 40, neighbours=5).similarity
    assert len(blocks) > 5
    assert pruned.getnnz(axis=1).max() == 5
    assert np.allclose(pruned.toarray(), top_per_row(whole, 5).toarray())
    assert np.allclose(whole.diagonal(), 0)


def test_top_per_row_equals_sorting_each_row_by_value_then_column() -> None:
    """On random rows with many ties and negative entries, against the plain definition."""
    rng = np.random.default_rng(11)
    dense = rng.integers(-2, 5, size=(40, 30)).astype(np.float64) / 4
    dense[rng.random(dense.shape) < 0.3] = 0
    for n in (1, 3, 8, 30):
        expected = np.zeros_like(dense)
        for row, values in enumerate(dense):
            columns = sorted(np.flatnonzero(values > 0), key=lambda c: (-values[c], c))[:n]
            expected[row, columns] = values[columns]
        kept = top_per_row(sparse.csr_matrix(dense), n)
        assert kept.dtype == np.float32
        assert kept.toarray().tolist() == expected.tolist()


def test_top_per_row_of_a_matrix_stored_out_of_order_with_duplicates() -> None:
    """Entries stored with columns out of order and a column twice (summed) give the same
    answer as the same matrix stored in order; n = 0 keeps nothing."""
    data = np.array([0.5, 0.2, 0.5, 0.3, 0.4])
    indices = np.array([3, 2, 1, 2, 0])  # row 0: columns 3, 2, 1, 2 (twice), 0
    unordered = sparse.csr_matrix((data, indices, np.array([0, 5])), shape=(1, 4))
    assert not unordered.has_canonical_format
    # Summed: column 0 0.4, column 1 0.5, column 2 0.5, column 3 0.5; ties to the lower.
    assert top_per_row(unordered, 2).toarray().tolist() == [[0, 0.5, 0.5, 0]]
    assert unordered.indices.tolist() == [3, 2, 1, 2, 0]  # the input is left as it was
    assert top_per_row(unordered, 0).nnz == 0


def test_each_protocol_reads_the_item_text_its_training_events_allow(
    tmp_path: Path, synthetic_raw: Path
) -> None:
    """Leave-one-out's models read the reviews of its training events; the cold-start and
    evolution protocols train on events re-split from another split, some of whose reviews
    leave-one-out trains on but they hold out, so theirs read only those that train every
    split. Items here have no catalog text, so their reviews are their text."""
    raw = read_dataset(synthetic_raw)
    raw.items["title"] = ""
    raw.items["text"] = ""
    prepare(raw, tmp_path, PrepareOptions(topics=SYNTH.topics))
    layout = DatasetLayout(tmp_path)
    loo = np.load(layout.item_vectors)
    every_split = np.load(layout.every_split_item_vectors)
    assert not np.array_equal(loo, every_split)
    encoder = EncoderConfig(dim=8, max_len=10, blocks=1)
    training = TrainingConfig(epochs=1, batch_size=256)
    for data, expected in (
        (LeaveOneOut.load(layout), loo),
        (ColdStart.load(layout).training, every_split),
        (Evolution.load(layout).training, every_split),
    ):
        trainer, _ = fit_encoder(layout, data, encoder, training)
        np.testing.assert_array_equal(trainer.model.text_vectors.numpy(), expected)
