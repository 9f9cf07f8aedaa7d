"""Training a sequence encoder: next-item prediction at every position of every training
sequence, with full softmax cross-entropy over the catalog (the loss that makes SASRec
strong; Klenitskiy and Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better
than SASRec?", RecSys 2023) or, for catalogs too large for it, sampled softmax; AdamW with
linear warm-up; the items a position has already seen left out of its softmax, as the
evaluation leaves them out; early stopping on validation NDCG@10 (the best epoch's weights
are kept); seeds fixed; resumable checkpoints.

With `weight_average`, what is validated and kept is an exponential moving average of the
weights over the steps (Polyak averaging, Keras' optimizer `use_ema`), not the weights the
last step left. Its validation curve is smoother, so the best epoch early stopping picks
is less a matter of a lucky step; on ml-100k it did better on test, on Amazon magazines
not (BENCHMARKS.md, "A moving average of the weights"), so it is off by default.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from evorec.data.sequences import LeaveOneOut
from evorec.encoder.config import TrainingConfig
from evorec.encoder.model import SequenceEncoder, left_padded, score_histories
from evorec.evaluation.metrics import RankingMetrics, catalog_positions


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    valid_ndcg10: float
    seconds: float


@dataclass
class TrainingResult:
    best_epoch: int
    valid: dict[str, float]
    history: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0
    peak_memory_mib: float = 0.0
    # A seed ensemble's members: each one's best epoch and validation metrics.
    members: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Progress:
    """Where early stopping stands after the epochs so far: the best validation NDCG@10, its
    epoch and metrics, the epochs since it, every epoch's record and the seconds spent (over
    all runs of a resumed training)."""

    best: float = -1.0
    best_epoch: int = 0
    valid: dict[str, float] = field(default_factory=dict)
    waited: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, record: EpochRecord, metrics: dict[str, float], warming_up: bool = False) -> bool:
        """Records an epoch; True when it is the best so far. An epoch that ended during the
        learning rate's warm-up does not count against the patience: at a fraction of its
        rate the model may not have moved yet, and on a small dataset (a few steps an epoch)
        the warm-up spans many epochs, which a short patience would otherwise stop in."""
        self.history.append(record)
        if record.valid_ndcg10 > self.best:
            self.best, self.best_epoch, self.valid, self.waited = (
                record.valid_ndcg10, record.epoch, metrics, 0
            )  # fmt: skip
            return True
        if not warming_up:
            self.waited += 1
        return False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Progress:
        state = json.loads(text)
        state["history"] = [EpochRecord(**record) for record in state["history"]]
        return cls(**state)


class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to the base rate, then constant."""

    def __init__(self, rate: float, steps: int) -> None:
        self.rate = rate
        self.steps = max(1, steps)

    def __call__(self, step: Any) -> Any:
        return self.rate * tf.minimum(1.0, tf.cast(step + 1, tf.float32) / self.steps)

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "steps": self.steps}


def training_pairs(sequences: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-item targets, left-padded: position i of a target row is the item that
    followed position i of its input row (0 where there is none)."""
    usable = [s for s in sequences if len(s) >= 2]
    return left_padded([s[:-1] for s in usable], max_len), left_padded(
        [s[1:] for s in usable], max_len
    )


def seen_logit(
    inputs: tf.Tensor, positions: tf.Tensor, labels: tf.Tensor, n_classes: int
) -> tf.Tensor:
    """-1e9 [positions, n_classes] for the items a position's history already holds (other
    than its own target, so a repeated item can still be learned), 0 elsewhere.

    Built from (position, history item) pairs, so it costs the size of the logits, not
    [batch, length, n_classes]."""
    length = tf.shape(inputs)[1]
    earlier = tf.linalg.band_part(tf.ones([length, length], inputs.dtype), -1, 0)
    histories = tf.gather_nd(inputs[:, None, :] * earlier[None], positions)  # [P, length]
    pairs = tf.where(histories > 0)
    indices = tf.stack([pairs[:, 0], tf.cast(tf.gather_nd(histories, pairs), tf.int64)], 1)
    seen = tf.scatter_nd(
        indices,
        tf.ones(tf.shape(pairs)[:1]),
        tf.cast(tf.stack([tf.shape(histories)[0], n_classes]), tf.int64),
    )
    seen = tf.minimum(seen, 1.0) * (1.0 - tf.one_hot(labels, n_classes))
    return seen * -1e9


class Trainer:
    """Fits `model` on the training sequences of `data`, validating on its validation targets."""

    def __init__(
        self,
        model: SequenceEncoder,
        data: LeaveOneOut,
        config: TrainingConfig,
        checkpoints: Path | None = None,
    ) -> None:
        if model.seed != config.seed:
            raise ValueError(
                f"the model was made with seed {model.seed} and would train with seed "
                f"{config.seed}: one seed fixes a run, pass the same to both"
            )
        self.model = model
        self.data = data
        self.config = config
        self.optimizer = keras.optimizers.AdamW(
            learning_rate=WarmUp(config.learning_rate, config.warmup_steps),
            weight_decay=config.weight_decay,
            use_ema=config.weight_average > 0,
            ema_momentum=config.weight_average or 0.99,
        )
        self.checkpoints = checkpoints
        self.manager: tf.train.CheckpointManager | None = None
        # Early stopping's state, as JSON in a variable so that checkpoints hold it.
        self.progress = tf.Variable(Progress().to_json(), dtype=tf.string, trainable=False)
        self.best_weights: list[tf.Variable] = []
        self.inputs, self.targets = training_pairs(data.train, model.config.max_len)
        # Items absent from training are neither targets nor in the softmax: a catalog item
        # that arrives later was not there to be pushed down either (see known_items).
        known = np.zeros(model.n_items + 1, dtype=np.float32)
        known[np.concatenate([*data.train, np.zeros(1, np.int64)])] = 1.0
        known[0] = 0.0
        model.known_items.assign(known[:, None])
        self.unknown_logit = tf.constant((1.0 - known) * -1e9)

    def _loss(self, inputs: tf.Tensor, targets: tf.Tensor, training: bool) -> tf.Tensor:
        table = self.model.item_table(training)
        hidden = self.model.encode(inputs, table, training)
        positions = tf.where(targets > 0)
        states = tf.gather_nd(hidden, positions)
        labels = tf.gather_nd(targets, positions)
        if self.config.loss == "sampled":
            return tf.reduce_mean(
                tf.nn.sampled_softmax_loss(
                    weights=table,
                    biases=self.unknown_logit,
                    labels=tf.cast(labels, tf.int64)[:, None],
                    inputs=states,
                    num_sampled=min(self.config.sampled_negatives, self.model.n_items),
                    num_classes=self.model.n_items + 1,
                )
            )
        logits = tf.matmul(states, table, transpose_b=True)
        logits = logits + self.unknown_logit  # never predict padding or an unseen item
        if self.config.mask_seen:
            logits = logits + seen_logit(inputs, positions, labels, self.model.n_items + 1)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    @tf.function(reduce_retracing=True)
    def _step(self, inputs: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = self._loss(inputs, targets, training=True)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    def scores(self, histories: list[np.ndarray], batch: int = 256) -> np.ndarray:
        """Scores [users, n_items + 1] of every item for each history."""
        return score_histories(self.model, histories, batch)

    def evaluate(self, split: Literal["valid", "test"]) -> dict[str, float]:
        histories = self.data.valid_input if split == "valid" else self.data.test_input
        targets = self.data.valid_target if split == "valid" else self.data.test_target
        found = catalog_positions(self.scores, histories, targets, self.model.n_items + 1)
        return RankingMetrics.from_positions(found).values

    def _checkpoint(self) -> None:
        """Restores the latest checkpoint, if any. A checkpoint holds every variable a run's
        future depends on: the model's weights and its dropout seed states (`variables`, not
        just `weights`), the optimizer's moments and step, and the early-stopping state with a
        copy of the best epoch's weights, so a resumed run ends as an uninterrupted one would.
        Variables are listed, not found through the model's attributes: a Keras 3 model's
        object graph leaves out layers kept in a list (the Transformer blocks)."""
        if self.checkpoints is None:
            return
        checkpoint = tf.train.Checkpoint(
            model=list(self.model.variables),
            optimizer=list(self.optimizer.variables),
            best_weights=self.best_weights,
            progress=self.progress,
        )
        self.manager = tf.train.CheckpointManager(checkpoint, str(self.checkpoints), max_to_keep=2)
        if self.manager.latest_checkpoint:
            checkpoint.restore(self.manager.latest_checkpoint).assert_consumed()

    def _epoch(self, epoch: int) -> float:
        """One pass over the training pairs in an order that depends on the seed and the
        epoch only, so a resumed run shuffles as the uninterrupted one did; the mean loss."""
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.inputs))
        losses = []
        for start in range(0, len(order), self.config.batch_size):
            rows = order[start : start + self.config.batch_size]
            loss = self._step(tf.constant(self.inputs[rows]), tf.constant(self.targets[rows]))
            losses.append(float(loss))
        return float(np.mean(losses))

    @contextmanager
    def _averaged(self) -> Iterator[None]:
        """The model holds the weights' moving average inside, its own weights again after
        (nothing changes without `weight_average`)."""
        if not self.optimizer.use_ema:
            yield
            return
        variables = self.model.trainable_variables
        own = [variable.numpy() for variable in variables]
        self.optimizer.finalize_variable_values(variables)
        try:
            yield
        finally:
            for variable, value in zip(variables, own, strict=True):
                variable.assign(value)

    def fit(self, on_epoch: Callable[[EpochRecord], None] = lambda record: None) -> TrainingResult:
        """Trains until `epochs` or `patience` epochs without a better validation NDCG@10 (the
        warm-up's epochs not counted), then keeps the best epoch's weights. With
        `checkpoints`, saves after every epoch and goes on from the latest checkpoint there."""
        keras.utils.set_random_seed(self.config.seed)
        started = time.perf_counter()
        self.model(tf.constant(self.inputs[:1]))  # build the weights
        self.optimizer.build(self.model.trainable_variables)
        self.best_weights = [tf.Variable(w, trainable=False) for w in self.model.weights]
        self._checkpoint()
        progress = Progress.from_json(self.progress.numpy().decode())
        before = progress.seconds
        while len(progress.history) < self.config.epochs and progress.waited < self.config.patience:
            epoch_started = time.perf_counter()
            loss = self._epoch(len(progress.history) + 1)
            with self._averaged():
                metrics = self.evaluate("valid")
                record = EpochRecord(
                    len(progress.history) + 1,
                    loss,
                    metrics["ndcg@10"],
                    time.perf_counter() - epoch_started,
                )
                warming_up = int(self.optimizer.iterations.numpy()) < self.config.warmup_steps
                if progress.add(record, metrics, warming_up):
                    for kept, weight in zip(self.best_weights, self.model.weights, strict=True):
                        kept.assign(weight)
            progress.seconds = before + time.perf_counter() - started
            self.progress.assign(progress.to_json())
            on_epoch(record)
            if self.manager is not None:
                self.manager.save(checkpoint_number=record.epoch)
        for weight, kept in zip(self.model.weights, self.best_weights, strict=True):
            weight.assign(kept)
        return TrainingResult(
            best_epoch=progress.best_epoch,
            valid=progress.valid,
            history=progress.history,
            seconds=before + time.perf_counter() - started,
            peak_memory_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )
