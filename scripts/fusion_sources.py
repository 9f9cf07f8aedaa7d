"""Which item-to-item similarity to fuse an encoder with, and co-occurrence's window, judged
on the validation split only (the test split is not read).

Each seed's encoder is trained as `evorec evaluate` trains it (`evorec.encoder.config`'s
defaults, unless an option below says otherwise); its validation scores are fused with item
cosine, and with item co-occurrence at each window, each source alone with its best weight
and decay (`evorec.evaluation.fusion.choose`); the script prints the validation NDCG@10 each
reaches, per seed and on average, as a Markdown table.

    .venv/bin/python scripts/fusion_sources.py DATASET [--model transformer-text]
        [--seeds 0,1,2] [--windows 5,7,8,9,10,11,12,15,20,50]
        [--epochs N] [--dim N] [--max-len N] [--blocks N]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

from evorec.baselines import ItemCoOccurrence, ItemCosine
from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.evaluation import fusion
from evorec.model_cli import fit_encoder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a folder `evorec data prepare` wrote")
    parser.add_argument("--model", default="transformer-text")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--windows", default="5,7,8,9,10,11,12,15,20,50")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--dim", type=int)
    parser.add_argument("--max-len", type=int)
    parser.add_argument("--blocks", type=int)
    args = parser.parse_args(argv)

    encoder = EncoderConfig().named(args.model)
    sizes = {"dim": args.dim, "max_len": args.max_len, "blocks": args.blocks}
    encoder = replace(encoder, **{k: v for k, v in sizes.items() if v is not None})
    training = TrainingConfig()
    if args.epochs is not None:
        training = replace(training, epochs=args.epochs)
    layout = DatasetLayout(args.dataset)
    data = LeaveOneOut.load(layout)
    sources = {"cosine": ItemCosine(data.train, data.n_items).similarity}
    for window in [int(w) for w in args.windows.split(",")]:
        found = ItemCoOccurrence(data.train, data.n_items, window=window)
        sources[f"co-occurrence, window {window}"] = found.similarity

    seeds = [int(s) for s in args.seeds.split(",")]
    reached: dict[str, list[str]] = {name: [] for name in ["encoder alone", *sources]}
    means: dict[str, list[float]] = {name: [] for name in reached}
    for seed in seeds:
        trainer, result = fit_encoder(layout, data, encoder, replace(training, seed=seed))
        print(f"seed {seed}: best epoch {result.best_epoch}", flush=True)
        means["encoder alone"].append(result.valid["ndcg@10"])
        reached["encoder alone"].append(f"{result.valid['ndcg@10']:.4f}")
        for name, similarity in sources.items():
            chosen = fusion.choose(
                trainer.scores, {name: similarity}, data.valid_input, data.valid_target
            )
            means[name].append(chosen.valid_ndcg10)
            reached[name].append(
                f"{chosen.valid_ndcg10:.4f} ({chosen.weights[name]:g}, {chosen.decay:g})"
            )

    print(f"\nValidation NDCG@10 of {args.model} on {args.dataset}, fused with each source")
    print("alone (its chosen weight, decay):\n")
    print(f"| source | {' | '.join(f'seed {s}' for s in seeds)} | mean |")
    print(f"|---|{'---|' * len(seeds)}---|")
    for name, cells in reached.items():
        print(f"| {name} | {' | '.join(cells)} | {statistics.mean(means[name]):.4f} |")


if __name__ == "__main__":
    main()
