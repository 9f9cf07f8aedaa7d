"""The validation curve of an encoder's weights and of their moving average, epoch by epoch,
from one training (the test split is not read).

The encoder is trained as `evorec evaluate` trains it (`evorec.encoder.config`'s defaults,
unless an option below says otherwise) with `--weight-average M` and a patience as long as
the run, so that the whole curve is seen; after every epoch the validation NDCG@10 of the
average (what training validates and keeps) and of the weights themselves (what it would keep
without the average) are printed, then each curve's best epoch and how much it moves from one
epoch to the next (the standard deviation of those steps, after the warm-up): the noise that
early stopping's choice of the best epoch is exposed to.

    .venv/bin/python scripts/weight_average_curve.py DATASET [--model transformer-text]
        [--seed 0] [--weight-average 0.99] [--epochs 110] [--dim N] [--max-len N] [--blocks N]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.encoder.model import SequenceEncoder
from evorec.encoder.training import EpochRecord, Trainer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a folder `evorec data prepare` wrote")
    parser.add_argument("--model", default="transformer-text")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight-average", type=float, default=0.99)
    parser.add_argument("--epochs", type=int, default=110)
    parser.add_argument("--dim", type=int)
    parser.add_argument("--max-len", type=int)
    parser.add_argument("--blocks", type=int)
    args = parser.parse_args(argv)
    if not 0 < args.weight_average < 1:
        parser.error("--weight-average must be between 0 and 1")

    encoder = EncoderConfig().named(args.model)
    sizes = {"dim": args.dim, "max_len": args.max_len, "blocks": args.blocks}
    encoder = replace(encoder, **{k: v for k, v in sizes.items() if v is not None})
    training = replace(
        TrainingConfig(),
        seed=args.seed,
        epochs=args.epochs,
        patience=args.epochs,
        weight_average=args.weight_average,
    )
    layout = DatasetLayout(args.dataset)
    data = LeaveOneOut.load(layout)
    text = np.load(layout.item_vectors) if encoder.use_text else None
    model = SequenceEncoder(data.n_items, encoder, text, seed=training.seed)
    trainer = Trainer(model, data, training)
    averaged: list[float] = []
    weights: list[float] = []
    warm_epochs: list[int] = []

    def on_epoch(record: EpochRecord) -> None:
        # Called after validation, with the weights themselves back in the model.
        averaged.append(record.valid_ndcg10)
        weights.append(trainer.evaluate("valid")["ndcg@10"])
        if int(trainer.optimizer.iterations.numpy()) >= training.warmup_steps:
            warm_epochs.append(record.epoch)
        print(f"| {record.epoch} | {averaged[-1]:.4f} | {weights[-1]:.4f} |", flush=True)

    print("| epoch | valid NDCG@10, the average | the weights |\n|---|---|---|", flush=True)
    trainer.fit(on_epoch)
    first = warm_epochs[0] - 1 if warm_epochs else 0
    for name, curve in (("the average", averaged), ("the weights", weights)):
        best = int(np.argmax(curve))
        noise = float(np.std(np.diff(curve[first:]))) if len(curve) - first > 2 else 0.0
        print(
            f"{name}: best epoch {best + 1} ({curve[best]:.4f}); "
            f"epoch-to-epoch change after the warm-up, standard deviation {noise:.4f}"
        )


if __name__ == "__main__":
    main()
