"""The seed ensemble: its scores are the mean of its members' logits, in training code and in
the exported SavedModel and bundle alike, and its members are seeded as documented."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut
from evorec.encoder.bundle import ModelBundle
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.encoder.ensemble import EnsembleTrainer, member_seed
from evorec.encoder.export import export_model
from evorec.encoder.model import SequenceEncoder, score_histories
from evorec.encoder.training import TrainingResult
from evorec.encoder.warm_start import served_config
from evorec.evaluation.metrics import mask_seen, top_k

MEMBERS = 2


@pytest.fixture(scope="module")
def fitted(prepared: Path) -> tuple[EnsembleTrainer, TrainingResult]:
    layout = DatasetLayout(prepared)
    config = EncoderConfig(dim=16, max_len=30, blocks=1, dropout=0.1, members=MEMBERS)
    training = TrainingConfig(epochs=3, batch_size=64, warmup_steps=2, learning_rate=5e-3, seed=7)
    trainer = EnsembleTrainer(
        LeaveOneOut.load(layout), config, training, np.load(layout.item_vectors)
    )
    return trainer, trainer.fit()


@pytest.fixture(scope="module")
def ensemble(fitted: tuple[EnsembleTrainer, TrainingResult]) -> EnsembleTrainer:
    return fitted[0]


def test_members_are_seeded_apart_and_the_first_is_the_single_model_of_the_seed(
    ensemble: EnsembleTrainer,
) -> None:
    seeds = [t.config.seed for t in ensemble.trainers]
    assert seeds == [7, member_seed(7, 1)]
    assert len(set(seeds)) == MEMBERS
    first, second = (m.item_ids.embeddings.numpy() for m in ensemble.model.members)
    assert not np.allclose(first, second)  # independently initialised and trained


def test_scores_are_the_mean_of_the_members_logits(ensemble: EnsembleTrainer) -> None:
    histories = ensemble.data.test_input[:30]
    members = [score_histories(m, histories) for m in ensemble.model.members]
    np.testing.assert_allclose(
        ensemble.scores(histories), np.mean(members, axis=0), rtol=1e-4, atol=1e-5
    )
    assert not np.allclose(members[0], members[1], atol=1e-3)


def test_fit_reports_each_member_and_the_ensembles_validation(
    fitted: tuple[EnsembleTrainer, TrainingResult],
) -> None:
    ensemble, result = fitted
    assert [len(m["valid"]) > 0 for m in result.members] == [True] * MEMBERS
    assert result.best_epoch == max(m["best_epoch"] for m in result.members)
    assert [r.epoch for r in result.history] == [1, 2, 3] * MEMBERS
    assert result.valid == ensemble.evaluate("valid")
    assert 0.0 < result.valid["ndcg@10"] <= 1.0


def test_the_export_serves_the_mean_logits_as_one_user_vector_and_table(
    ensemble: EnsembleTrainer, prepared: Path, tmp_path: Path
) -> None:
    layout = DatasetLayout(prepared)
    path = export_model(ensemble.model, layout, tmp_path, "encoder", {"metrics": {}})
    bundle = path / "assets.extra" / "evorec"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["encoder"]["members"] == MEMBERS
    table = np.load(bundle / "item_table.npy")
    assert table.shape == (ensemble.model.n_items + 1, MEMBERS * 16)
    # A new item's text vector maps through the members' projections side by side.
    projection = np.load(bundle / "text_projection.npy")
    text = np.load(layout.item_vectors)
    kernels = [w for m in ensemble.model.members if (w := m.text_kernel()) is not None]
    assert len(kernels) == MEMBERS
    for number, kernel in enumerate(kernels):
        np.testing.assert_allclose(
            projection[:, number * 16 : (number + 1) * 16], kernel, rtol=1e-6
        )
    np.testing.assert_allclose(
        text @ projection,
        np.concatenate([text @ kernel for kernel in kernels], axis=1),
        rtol=1e-5,
        atol=1e-6,
    )

    histories = ensemble.data.test_input[:20]
    width = max(len(h) for h in histories)
    padded = np.zeros((len(histories), width), np.int32)
    for row, history in enumerate(histories):
        padded[row, : len(history)] = history
    lengths = np.array([len(h) for h in histories], np.int32)
    loaded = tf.saved_model.load(str(path))
    users = loaded.signatures["serving_default"](
        history=tf.constant(padded), length=tf.constant(lengths)
    )["user_vector"].numpy()
    assert users.shape == (len(histories), MEMBERS * 16)
    members = [score_histories(m, histories) for m in ensemble.model.members]
    np.testing.assert_allclose(users @ table.T, np.mean(members, axis=0), rtol=1e-4, atol=1e-4)
    served = loaded.signatures["top_k"](
        history=tf.constant(padded),
        length=tf.constant(lengths),
        exclude=tf.constant(padded),
        k=tf.constant(10),
    )
    expected = top_k(mask_seen(ensemble.scores(histories), histories), 10)
    assert (served["item_index"].numpy() == expected).mean() > 0.95

    # What the services read: the bundle, whose new-item vectors have the table's width; a
    # warm start (retrain) cannot rebuild an ensemble as one encoder and says so.
    loaded_bundle = ModelBundle.load(path)
    assert loaded_bundle.text_projection is not None
    new_items = loaded_bundle.text_vectors @ loaded_bundle.text_projection
    assert new_items.shape == loaded_bundle.item_table.shape
    with pytest.raises(ValueError, match=f"ensemble of {MEMBERS} encoders"):
        SequenceEncoder(ensemble.model.n_items, served_config(path), text, seed=0)


def test_a_single_encoder_refuses_an_ensemble_config(prepared: Path) -> None:
    data = LeaveOneOut.load(DatasetLayout(prepared))
    with pytest.raises(ValueError, match="ensemble of 3 encoders"):
        SequenceEncoder(data.n_items, EncoderConfig(members=3, use_text=False), None, seed=0)


def test_an_ensemble_needs_a_member() -> None:
    with pytest.raises(ValueError, match="--members must be at least 1, not 0"):
        EncoderConfig(members=0, use_text=False)


@pytest.mark.parametrize(("command", "has_members"), [
    ("train", True), ("evaluate", True), ("tune", False), ("retrain", False),
])  # fmt: skip
def test_only_the_commands_that_train_ensembles_take_members(
    command: str, has_members: bool
) -> None:
    from typer.testing import CliRunner

    from evorec.cli import app

    output = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
    assert "--dim" in output
    assert ("--members" in output) == has_members
