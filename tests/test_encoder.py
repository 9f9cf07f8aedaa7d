"""The TensorFlow encoders: they learn, export to TF Serving's layout, and the exported model
ranks exactly as the training code does."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import sparse
from tensorflow_serving.apis import prediction_log_pb2

from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut, user_sequences
from evorec.encoder.batch_shapes import all_shapes
from evorec.encoder.config import EncoderConfig, EncoderKind, TrainingConfig
from evorec.encoder.export import export_model, next_version
from evorec.encoder.model import SequenceEncoder, left_padded
from evorec.encoder.settings import ServingSettings
from evorec.encoder.training import (
    EpochRecord,
    Progress,
    Trainer,
    TrainingResult,
    seen_logit,
    training_pairs,
)
from evorec.evaluation.metrics import mask_seen, top_k
from tests.conftest import ROOT


def test_training_pairs_shift_by_one_and_pad_on_the_left() -> None:
    inputs, targets = training_pairs([np.array([5, 6, 7]), np.array([9])], max_len=4)
    assert inputs.tolist() == [[0, 0, 5, 6]]
    assert targets.tolist() == [[0, 0, 6, 7]]


def test_each_position_masks_the_items_its_history_holds_but_not_its_target() -> None:
    inputs, targets = training_pairs([np.array([3, 1, 2, 5]), np.array([4, 4, 2])], max_len=4)
    positions = tf.where(targets > 0)
    labels = tf.gather_nd(targets, positions)
    masked = seen_logit(tf.constant(inputs), positions, labels, n_classes=6).numpy() < 0
    assert [np.flatnonzero(row).tolist() for row in masked] == [
        [3],  # history 3, target 1
        [1, 3],  # history 3 1, target 2
        [1, 2, 3],  # history 3 1 2, target 5
        [],  # history 4, target 4: a repeat stays learnable
        [4],  # history 4 4, target 2
    ]


@pytest.fixture(scope="module")
def trained(prepared: Path) -> Trainer:
    layout = DatasetLayout(prepared)
    data = LeaveOneOut.load(layout)
    config = EncoderConfig(dim=32, max_len=50, blocks=1, dropout=0.1)
    model = SequenceEncoder(data.n_items, config, np.load(layout.item_vectors), seed=0)
    trainer = Trainer(
        model, data, TrainingConfig(epochs=8, batch_size=32, warmup_steps=5, learning_rate=5e-3)
    )
    trainer.fit()
    return trainer


def test_the_transformer_learns_beyond_chance(trained: Trainer) -> None:
    valid = trained.evaluate("valid")
    chance = 10 / trained.model.n_items
    assert valid["hr@10"] > 2 * chance


def test_the_seed_sets_the_first_weights_whatever_the_process_drew_before(
    prepared: Path,
) -> None:
    """The id and text tables are built, and the dropout generators drawn, when the encoder
    is made: the same seed gives the same model after any earlier draws."""
    layout = DatasetLayout(prepared)
    data = LeaveOneOut.load(layout)
    config = EncoderConfig(dim=16, max_len=20, blocks=1, dropout=0.2, id_dropout=0.1)
    text = np.load(layout.item_vectors)

    def made_after(earlier_seed: int, seed: int) -> list[np.ndarray]:
        keras.utils.set_random_seed(earlier_seed)
        keras.random.normal((7,))
        model = SequenceEncoder(data.n_items, config, text, seed=seed)
        generators = [v for v in model.variables if "seed_generator" in v.path]
        assert generators  # the dropouts' generators are among what the seed fixes
        return [v.numpy() for v in model.variables]

    first = made_after(1, seed=0)
    for a, b in zip(first, made_after(2, seed=0), strict=True):
        np.testing.assert_array_equal(a, b)
    other = made_after(1, seed=1)
    assert not np.array_equal(first[0], other[0])


def test_a_model_trains_only_with_the_seed_it_was_made_with(prepared: Path) -> None:
    data = LeaveOneOut.load(DatasetLayout(prepared))
    config = EncoderConfig(dim=8, max_len=10, use_text=False)
    model = SequenceEncoder(data.n_items, config, None, seed=1)
    with pytest.raises(ValueError, match="made with seed 1 and would train with seed 0"):
        Trainer(model, data, TrainingConfig(seed=0))
    assert Trainer(model, data, TrainingConfig(seed=1)).config.seed == 1


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_recurrent_encoders_and_id_only_models_train(prepared: Path, kind: EncoderKind) -> None:
    data = LeaveOneOut.load(DatasetLayout(prepared))
    model = SequenceEncoder(
        data.n_items, EncoderConfig(kind=kind, dim=16, max_len=30, use_text=False), None, seed=0
    )
    training = TrainingConfig(epochs=2, batch_size=64, warmup_steps=2, learning_rate=5e-3)
    result = Trainer(model, data, training).fit()
    assert [r.epoch for r in result.history] == [1, 2]
    assert result.history[-1].loss < result.history[0].loss


def test_the_bundle_sources_are_fitted_on_the_sequences_given(
    trained: Trainer, prepared: Path, tmp_path: Path
) -> None:
    """Serving fits popularity and the Markov chain on every event; an offline evaluation of
    the ranking path passes the training sequences, so that no test transition is in them."""
    layout = DatasetLayout(prepared)
    data = trained.data
    served = export_model(trained.model, layout, tmp_path, "served", {"metrics": {}})
    offline = export_model(
        trained.model, layout, tmp_path, "offline", {"metrics": {}}, source_sequences=data.train
    )

    def popularity(path: Path) -> np.ndarray:
        return np.load(path / "assets.extra" / "evorec" / "popularity.npy")

    def markov(path: Path) -> Any:
        return sparse.load_npz(path / "assets.extra" / "evorec" / "markov.npz")

    every_event = np.bincount(np.concatenate(user_sequences(layout)), minlength=data.n_items + 1)
    training = np.bincount(np.concatenate(data.train), minlength=data.n_items + 1)
    np.testing.assert_array_equal(popularity(served), every_event)
    np.testing.assert_array_equal(popularity(offline), training)
    # The validation -> test transitions that no training sequence holds.
    trained_pairs = {(int(a), int(b)) for seq in data.train for a, b in itertools.pairwise(seq)}
    unseen = {
        (int(valid), int(test))
        for valid, test in zip(data.valid_target, data.test_target, strict=True)
    } - trained_pairs
    assert unseen
    assert all(markov(offline)[a, b] == 0 for a, b in unseen)
    assert any(markov(served)[a, b] > 0 for a, b in unseen)


def test_the_export_ranks_as_the_training_code(
    trained: Trainer, prepared: Path, tmp_path: Path
) -> None:
    layout = DatasetLayout(prepared)
    path = export_model(trained.model, layout, tmp_path, "encoder", {"metrics": {}})
    assert path == tmp_path / "encoder" / "1"
    assert next_version(tmp_path / "encoder") == 2
    bundle = path / "assets.extra" / "evorec"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["n_items"] == trained.model.n_items
    assert sorted(p.name for p in bundle.iterdir()) == [
        "evolution.json", "hmm.json", "item_similarity.npz", "item_table.npy", "items.parquet",
        "manifest.json", "markov.npz", "popularity.npy", "text_projection.npy", "text_vectors.npy",
        "topics.json", "word_vectors.bin",
    ]  # fmt: skip

    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "top_k"}
    assert_the_warmup_requests_replay(path, loaded, trained.model)
    histories = trained.data.test_input[:20]
    width = max(len(h) for h in histories)
    padded = np.zeros((len(histories), width), np.int32)
    for row, history in enumerate(histories):
        padded[row, : len(history)] = history
    lengths = np.array([len(h) for h in histories], np.int32)
    served = loaded.signatures["top_k"](
        history=tf.constant(padded),
        length=tf.constant(lengths),
        exclude=tf.constant(padded),
        k=tf.constant(10),
    )
    expected = top_k(mask_seen(trained.scores(histories), histories), 10)
    assert served["item_index"].numpy().tolist() == expected.tolist()
    vectors = loaded.signatures["serving_default"](
        history=tf.constant(padded), length=tf.constant(lengths)
    )
    assert vectors["user_vector"].shape == (20, trained.model.config.dim)
    cli = Path(sys.executable).parent / "saved_model_cli"
    shown = subprocess.run(
        [str(cli), "show", "--dir", str(path), "--all"], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert "signature_def['serving_default']" in shown.stdout
    assert "signature_def['top_k']" in shown.stdout


def assert_the_warmup_requests_replay(path: Path, loaded: Any, model: SequenceEncoder) -> None:
    """TF Serving replays `assets.extra/tf_serving_warmup_requests` (a TFRecord file of
    `PredictionLog`s) at load: each must name this model and a signature it has, give exactly
    that signature's inputs with their dtypes, and answer as the model does."""
    records = list(
        tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests"))
    )
    # One request in each shape the Batcher sends; replaying the first, a middle and the
    # last (the largest) is enough to check them.
    assert len(records) == len(all_shapes(ServingSettings().max_batch_size, model.config.max_len))
    for record in (records[0], records[len(records) // 2], records[-1]):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == "encoder"
        signature = loaded.signatures[request.model_spec.signature_name]
        expected = signature.structured_input_signature[1]
        inputs = {name: tf.make_ndarray(t) for name, t in request.inputs.items()}
        assert {name: value.dtype for name, value in inputs.items()} == {
            name: spec.dtype.as_numpy_dtype for name, spec in expected.items()
        }
        vectors = signature(**{name: tf.constant(value) for name, value in inputs.items()})
        vectors = vectors["user_vector"].numpy()
        assert vectors.shape == (len(inputs["history"]), model.config.dim)
        assert np.isfinite(vectors).all()
        histories = [row[:n] for row, n in zip(inputs["history"], inputs["length"], strict=True)]
        direct = model(tf.constant(left_padded(histories, model.config.max_len))).numpy()
        np.testing.assert_allclose(vectors, direct, rtol=1e-4, atol=1e-5)


def test_train_and_evaluate_commands(prepared: Path, tmp_path: Path) -> None:

    env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
    env.update(EVOREC_DATA_DIR=str(tmp_path), COLUMNS="120")
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 300}
    trained = subprocess.run(
        [sys.executable, "-m", "evorec", "train", str(prepared), "--epochs", "1", "--max-len", "20",
         "--dim", "16", "--heads", "2", "--id-dropout", "0.3"],
        **run,
    )  # type: ignore[call-overload]  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "models" / "encoder" / "1" / "saved_model.pb").exists()
    manifest = tmp_path / "models" / "encoder" / "1" / "assets.extra" / "evorec" / "manifest.json"
    encoder = json.loads(manifest.read_text())["encoder"]
    assert (encoder["kind"], encoder["heads"], encoder["id_dropout"]) == ("transformer", 2, 0.3)
    assert "ndcg@10" in trained.stdout
    evaluated = subprocess.run(
        [sys.executable, "-m", "evorec", "evaluate", str(prepared), "--models", "popular,markov",
         "--protocols", "loo,evolution", "--json", str(tmp_path / "e.json"),
         "--plots", str(tmp_path / "plots")],
        **run,
    )  # type: ignore[call-overload]  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    results = json.loads((tmp_path / "e.json").read_text())
    assert [r["model"] for r in results["loo"]] == ["popular", "markov"]
    assert 0 <= results["loo"][1]["runs"][0]["ndcg@10"] <= 1
    assert (tmp_path / "plots" / "metrics.png").exists()
    assert [r["model"] for r in results["evolution"]] == [
        "last-window",
        "topic-markov",
        "hidden-markov",
    ]
    assert (tmp_path / "plots" / "timelines.png").read_bytes()[:4] == b"\x89PNG"


def test_the_last_position_shortcut_gives_the_full_encoders_user_vectors(
    trained: Trainer,
) -> None:
    model = trained.model
    histories = trained.data.test_input[:16]
    sequences = tf.constant(left_padded(histories, model.config.max_len))
    table = model.item_table()
    full = model.encode(sequences, table)[:, -1, :]
    shortcut = model.encode(sequences, table, last_only=True)
    assert shortcut.shape == (16, 1, model.config.dim)
    np.testing.assert_allclose(shortcut[:, -1, :], full, rtol=1e-4, atol=1e-5)


def train_resumable(
    prepared: Path, checkpoints: Path, epochs: int, patience: int = 20, weight_average: float = 0.0
) -> tuple[TrainingResult, list[np.ndarray]]:
    """A small Transformer with text, dropout and id dropout, trained with checkpoints in
    `checkpoints`; the result and the weights it ends with."""
    keras.utils.set_random_seed(0)
    layout = DatasetLayout(prepared)
    data = LeaveOneOut.load(layout)
    config = EncoderConfig(dim=16, max_len=20, blocks=1, dropout=0.2, id_dropout=0.1)
    model = SequenceEncoder(data.n_items, config, np.load(layout.item_vectors), seed=0)
    training = TrainingConfig(
        epochs=epochs,
        patience=patience,
        batch_size=32,
        warmup_steps=5,
        learning_rate=5e-3,
        weight_average=weight_average,
    )
    result = Trainer(model, data, training, checkpoints).fit()
    return result, model.get_weights()


def assert_same_training(
    got: tuple[TrainingResult, list[np.ndarray]], expected: tuple[TrainingResult, list[np.ndarray]]
) -> None:
    (result, weights), (expected_result, expected_weights) = got, expected
    assert result.best_epoch == expected_result.best_epoch
    assert result.valid == expected_result.valid
    assert [(r.epoch, r.loss, r.valid_ndcg10) for r in result.history] == [
        (r.epoch, r.loss, r.valid_ndcg10) for r in expected_result.history
    ]
    assert len(weights) == len(expected_weights)
    for weight, expected_weight in zip(weights, expected_weights, strict=True):
        np.testing.assert_array_equal(weight, expected_weight)


@pytest.mark.parametrize("weight_average", [0.0, 0.9])
def test_a_resumed_training_ends_as_an_uninterrupted_one(
    prepared: Path, tmp_path: Path, weight_average: float
) -> None:
    uninterrupted = train_resumable(
        prepared, tmp_path / "uninterrupted", epochs=4, weight_average=weight_average
    )
    interrupted, _ = train_resumable(
        prepared, tmp_path / "resumed", epochs=2, weight_average=weight_average
    )
    assert [r.epoch for r in interrupted.history] == [1, 2]
    resumed = train_resumable(
        prepared, tmp_path / "resumed", epochs=4, weight_average=weight_average
    )
    assert [r.epoch for r in resumed[0].history] == [1, 2, 3, 4]
    assert_same_training(resumed, uninterrupted)


def test_resuming_a_stopped_training_keeps_its_best_epoch_and_weights(
    prepared: Path, tmp_path: Path
) -> None:
    stopped = train_resumable(prepared, tmp_path, epochs=30, patience=2)
    epochs_run = len(stopped[0].history)
    assert epochs_run < 30, "early stopping should end this run"
    assert stopped[0].best_epoch == epochs_run - 2
    resumed = train_resumable(prepared, tmp_path, epochs=30, patience=2)
    assert_same_training(resumed, stopped)


def test_the_warm_ups_epochs_do_not_count_against_the_patience() -> None:
    progress = Progress()

    def epoch(number: int, ndcg: float) -> EpochRecord:
        return EpochRecord(number, 1.0, ndcg, 0.1)

    assert progress.add(epoch(1, 0.02), {}, warming_up=True)
    for number in (2, 3, 4):  # not better while the rate warms up: no patience spent
        assert not progress.add(epoch(number, 0.01), {}, warming_up=True)
    assert progress.waited == 0
    assert not progress.add(epoch(5, 0.01), {})
    assert progress.waited == 1
    assert progress.add(epoch(6, 0.03), {})
    assert (progress.best_epoch, progress.waited) == (6, 0)


def test_a_short_patience_does_not_stop_a_training_still_warming_up(prepared: Path) -> None:
    """A warm-up longer than the run keeps the rate near zero, so no epoch is better than the
    first: with patience 1 the run used to stop after its second epoch."""
    keras.utils.set_random_seed(0)
    layout = DatasetLayout(prepared)
    data = LeaveOneOut.load(layout)
    config = EncoderConfig(dim=16, max_len=20, blocks=1)
    model = SequenceEncoder(data.n_items, config, np.load(layout.item_vectors), seed=0)
    training = TrainingConfig(epochs=4, patience=1, batch_size=32, warmup_steps=1_000_000)
    result = Trainer(model, data, training).fit()
    assert [record.epoch for record in result.history] == [1, 2, 3, 4]


def test_the_weight_average_is_validated_and_kept_while_training_goes_on_from_the_weights(
    prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `weight_average` m, the weights validated and kept are a_1 = w_1 and
    a_k = m a_(k-1) + (1 - m) w_k over the steps' weights w_k up to the best epoch, while
    each step starts from the last step's own weights, not from the average validated."""
    keras.utils.set_random_seed(0)
    data = LeaveOneOut.load(DatasetLayout(prepared))
    model = SequenceEncoder(
        data.n_items, EncoderConfig(dim=16, max_len=20, use_text=False), None, seed=0
    )
    momentum = 0.8
    training = TrainingConfig(
        epochs=3, batch_size=64, warmup_steps=2, learning_rate=5e-3, weight_average=momentum
    )
    trainer = Trainer(model, data, training)
    steps: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
    step = trainer._step

    def recorded(inputs: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        before = [v.numpy() for v in model.trainable_variables]
        loss = step(inputs, targets)
        steps.append((before, [v.numpy() for v in model.trainable_variables]))
        return loss

    monkeypatch.setattr(trainer, "_step", recorded)
    result = trainer.fit()
    for (_, after), (before, _) in itertools.pairwise(steps):
        for a, b in zip(after, before, strict=True):
            np.testing.assert_array_equal(a, b)
    per_epoch = len(steps) // 3
    average = steps[0][1]
    for _, weights in steps[1 : result.best_epoch * per_epoch]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights, strict=True)]
    assert not np.allclose(average[0], steps[result.best_epoch * per_epoch - 1][1][0])
    for kept, expected in zip(model.trainable_variables, average, strict=True):
        np.testing.assert_allclose(kept.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert trainer.evaluate("valid") == result.valid
