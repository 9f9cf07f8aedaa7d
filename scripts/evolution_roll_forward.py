"""How to carry the encoder's next-topic distribution over a horizon of N interactions: the
evolution protocol's data (evorec.evaluation.evolution), one Transformer with text trained on
the histories, and its step 1 (a) repeated, (b) carried by the population's topic transitions,
(c) carried by each user's own (what `evorec.evolution.methods.encoder` does). Prints each
against what users did next and, on simulated data, per kind of user against the truth.

    .venv/bin/python scripts/evolution_roll_forward.py PREPARED [SIMULATED-RAW | -] EPOCHS
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from evorec.data.artifacts import DatasetLayout
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.encoder.model import SequenceEncoder
from evorec.encoder.training import Trainer
from evorec.evaluation.evolution import Evolution
from evorec.evaluation.ground_truth import SimulatorTruth
from evorec.evolution import methods


def main(prepared: Path, raw: str, epochs: int) -> None:
    layout = DatasetLayout(prepared)
    evolution = Evolution.load(layout)
    text = np.load(layout.item_vectors_of(evolution.training.text))
    model = SequenceEncoder(evolution.training.n_items, EncoderConfig(), text, seed=0)
    trainer = Trainer(model, evolution.training, TrainingConfig(epochs=epochs, seed=0))
    trainer.fit()
    first = evolution.from_item_scores(trainer.scores(evolution.histories))
    population = methods.transitions(evolution.history_topics)
    horizon = evolution.horizon
    variants = {
        "repeat": first,
        "population": [methods.roll_forward(f, population, horizon) for f in first],
        "own-chain": [
            methods.encoder(f, topics, horizon)
            for f, topics in zip(first, evolution.history_topics, strict=True)
        ],
    }
    truth = SimulatorTruth.load(Path(raw), layout) if raw != "-" else None
    for name, predictions in variants.items():
        observed = evolution.score(predictions)
        print(name, "observed", {k: round(v, 4) for k, v in observed.items()})
        if truth is None:
            continue
        actual = [truth.actual(lines) for lines in evolution.future_lines]
        for kind, where in sorted(truth.kinds(evolution.user_ids).items()):
            scored = methods.score(
                [truth.mapped(predictions[i]) for i in where], [actual[i] for i in where]
            )
            print(
                f"  {kind} vs truth: js {scored['js_divergence']:.4f}, "
                f"top-topic {scored['top_topic_accuracy']:.3f}"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
