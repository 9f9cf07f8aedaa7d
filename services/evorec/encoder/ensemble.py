"""A seed ensemble: K encoders of the same architecture, trained independently from different
seeds, whose next-item logits are averaged, served as ONE model.

Averaging the members' logits, (u_1.e_1 + ... + u_K.e_K) / K, is a single dot product of the
concatenated user vector [u_1 .. u_K] / K with the concatenated item table [e_1 .. e_K]. So the
ensemble exports as what every consumer already expects: a model mapping a history to one user
vector (of K x dim) and an item table (of K x dim columns) scored by dot product, which the
ranking service's exact and ANN scoring use unchanged; a new item's text vector t maps through
the concatenated projections [W_1 .. W_K]. Independently seeded SASRec-type models disagree
enough in their errors that the mean ranks better than any one of them; the price is K times
the training time and K times the serving work of the encoder.

Member k of the run with seed s is trained with seed `member_seed(s, k)`; member 0 uses s
itself, so the ensemble's first member is exactly the single model of the same seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import tensorflow as tf

from evorec.data.sequences import LeaveOneOut
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.encoder.model import SequenceEncoder, score_histories
from evorec.encoder.training import EpochRecord, Trainer, TrainingResult
from evorec.evaluation.metrics import RankingMetrics, catalog_positions

# Seeds of an ensemble's members are this far apart, so that the members of runs with
# neighbouring seeds (0, 1, 2) never share a seed.
MEMBER_SEED_STRIDE = 1000


def member_seed(seed: int, member: int) -> int:
    """The training seed of member `member` (0-based) of the run with seed `seed`."""
    return seed + MEMBER_SEED_STRIDE * member


class EnsembleEncoder:
    """K trained `SequenceEncoder`s behind the interface export and scoring use
    (`n_items`, `config`, `variables`, `item_table`, `encode`, `text_kernel`): the table is the
    members' tables side by side, and `encode` gives each member its own columns of it and
    returns the members' outputs side by side, divided by K (so dot products are the mean of
    the members' logits)."""

    def __init__(self, members: list[SequenceEncoder]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0].config
        if any(m.config != first or m.n_items != members[0].n_items for m in members):
            raise ValueError("the members of an ensemble must share architecture and catalog")
        self.members = members
        self.n_items = members[0].n_items
        self.config = replace(first, members=len(members))

    @property
    def variables(self) -> list[tf.Variable]:
        return [v for member in self.members for v in member.variables]

    def item_table(self, training: bool = False) -> tf.Tensor:
        """[n_items + 1, K x dim]: member k's table in columns k*dim .. (k+1)*dim."""
        return tf.concat([m.item_table(training) for m in self.members], axis=1)

    def encode(
        self,
        sequences: tf.Tensor,
        table: tf.Tensor,
        training: bool = False,
        last_only: bool = False,
    ) -> tf.Tensor:
        dim = self.members[0].config.dim
        outputs = [
            member.encode(sequences, table[:, k * dim : (k + 1) * dim], training, last_only)
            for k, member in enumerate(self.members)
        ]
        return tf.concat(outputs, axis=-1) / len(self.members)

    def text_kernel(self) -> np.ndarray | None:
        """[text dim, K x dim]: the members' text projections side by side (None: id only)."""
        kernels = [m.text_kernel() for m in self.members]
        if any(k is None for k in kernels):
            return None
        return np.concatenate([k for k in kernels if k is not None], axis=1)


class EnsembleTrainer:
    """Trains the K members one after another (each with `Trainer`: its own seed, early
    stopping and best epoch), then scores with their mean logits."""

    def __init__(
        self,
        data: LeaveOneOut,
        encoder: EncoderConfig,
        training: TrainingConfig,
        text_vectors: np.ndarray | None,
        checkpoints: Path | None = None,
    ) -> None:
        single = replace(encoder, members=1)  # EncoderConfig holds members >= 1
        self.data = data
        seeds = [member_seed(training.seed, k) for k in range(encoder.members)]
        self.trainers = [
            Trainer(
                SequenceEncoder(data.n_items, single, text_vectors, seed=seed),
                data,
                replace(training, seed=seed),
                None if checkpoints is None else checkpoints / f"member-{k}",
            )
            for k, seed in enumerate(seeds)
        ]
        self.model = EnsembleEncoder([t.model for t in self.trainers])

    def fit(self, on_epoch: Callable[[EpochRecord], None] = lambda record: None) -> TrainingResult:
        """Fits every member; the result's `valid` is the ensemble's validation metrics, its
        history every member's epochs in turn, its seconds their sum, its best epoch the
        latest of the members' (each member's own in `members`)."""
        started = time.perf_counter()
        results = [trainer.fit(on_epoch) for trainer in self.trainers]
        valid = self.evaluate("valid")
        return TrainingResult(
            best_epoch=max(r.best_epoch for r in results),
            valid=valid,
            history=[record for r in results for record in r.history],
            seconds=time.perf_counter() - started,
            peak_memory_mib=max(r.peak_memory_mib for r in results),
            members=[{"best_epoch": r.best_epoch, "valid": r.valid} for r in results],
        )

    def scores(self, histories: list[np.ndarray]) -> np.ndarray:
        """Scores [users, n_items + 1]: the mean of the members' logits."""
        return score_histories(self.model, histories)

    def evaluate(self, split: Literal["valid", "test"]) -> dict[str, float]:
        histories = self.data.valid_input if split == "valid" else self.data.test_input
        targets = self.data.valid_target if split == "valid" else self.data.test_target
        found = catalog_positions(self.scores, histories, targets, self.model.n_items + 1)
        return RankingMetrics.from_positions(found).values
