"""The comparison grid: {no text, Word2Vec text, MiniLM text} x {LSTM, Transformer} and the
baselines, on ml-100k and the Amazon categories, under leave-one-out with full ranking and seen
items excluded; the text cold-start split where new items have text. Prints Markdown tables.

    .venv/bin/python scripts/compare_models.py [--datasets ../shared/datasets] [--seeds 0,1,2]
        [--only ml-100k] [--models transformer-text,transformer-minilm,popular]
        [--out benchmarks-out] [--source NAME=PATH]... [--protocols loo] [--resume]
        [any option of `evorec evaluate`, e.g. --patience 10 --heads 2]

Models are `evorec evaluate`'s (`popular`, `item-cosine`, `item-cooccurrence`, `markov`,
`transformer-text`, `transformer`, `lstm-text`, `lstm`, ...), where `-text` is the Word2Vec
text of `evorec data prepare`'s default, plus `<kind>-minilm`: the same `<kind>-text` encoder
on the dataset prepared a second time with `--text-encoder minilm` (item text vectors of the
pretrained MiniLM model; its files from `make models`). The text encoder is a choice of
preparation, not of training.
`<model>+cosine`, `<model>+cooccurrence` or `<model>+cosine+cooccurrence` (e.g.
`transformer-minilm+cosine+cooccurrence`) is that encoder fused with item-to-item similarity
over the user's recent items, from the sources named, under leave-one-out only (`evorec
evaluate`'s models; README, "Models").

`--source` adds a dataset of one's own (evaluated under leave-one-out; PATH relative to
--datasets, or absolute; a folder with a manifest.json is taken as already prepared, and then
has no MiniLM variant), and then only the added ones run unless --only names others: the test
suite's smoke run points it at a small simulated dataset. Each dataset is prepared first
(evorec data prepare, with the source's k-core) unless it already is; the encoders are trained
with `evorec evaluate`'s defaults, which are `evorec.encoder.config`'s, unless an option after
the script's own says otherwise. Each model, seed and protocol runs in its own `evorec
evaluate` process, so the peak resident memory reported for a run is that one training's
own, not the high-water mark of the runs before it. The cold-start protocol runs the
baselines and the text encoders only: an id-only encoder has no vector for an item it never
trained on, so it cannot place one (recall 0 apart from random ties, measured at 523837c).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evorec.data.artifacts import DatasetLayout

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ("popular", "item-cosine", "item-cooccurrence", "markov")
MODELS = (
    "popular,item-cosine,markov,transformer-text,transformer,lstm-text,lstm,"
    "transformer-minilm,lstm-minilm"
)
# The suffix of a model run on the dataset prepared with `--text-encoder minilm`.
MINILM = "-minilm"
# What follows an encoder's name when it is fused with item-to-item similarity
# (`+cosine`, `+cosine+cooccurrence`: evorec.evaluation.fusion); such a model trains its
# encoder in its own process, as every model here does.
FUSED = "+"
# The Amazon categories are the 2018 "5-core" files, which their duplicate reviews leave short
# of 5 events per user or item once removed: `--min-*-events 5` restores the 5-core.
FIVE_CORE = ("--min-user-events", "5", "--min-item-events", "5")


@dataclass(frozen=True)
class Source:
    """A dataset of the grid: its path under --datasets, the protocols it is evaluated under
    and the options `evorec data prepare` gets for it."""

    path: str
    protocols: str
    prepare: tuple[str, ...] = ()


SOURCES = {
    "ml-100k": Source("ml-100k", "loo"),
    # Without k-core: the figures recorded in BENCHMARKS.md before the 5-core grid.
    "amazon-magazines": Source("amazon/Magazine_Subscriptions_5.json.gz", "loo,cold-start"),
    # The categories with enough events after 5-core filtering (BENCHMARKS.md says why the
    # others are not): magazines has catalog text (its metadata), so new items have text;
    # gift cards only reviews, which for an item held out as new are held out too.
    "amazon-magazines-5core": Source(
        "amazon/Magazine_Subscriptions_5.json.gz", "loo,cold-start", FIVE_CORE
    ),
    "amazon-gift-cards-5core": Source("amazon/Gift_Cards_5.json.gz", "loo", FIVE_CORE),
}


def evorec(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "evorec", *args], cwd=ROOT, check=True)


def added_sources(entries: list[str]) -> dict[str, Source]:
    """`--source NAME=PATH` entries as SOURCES entries, under leave-one-out."""
    sources = {}
    for entry in entries:
        name, _, path = entry.partition("=")
        if not name or not path:
            raise SystemExit(f"--source {entry!r}: expected NAME=PATH")
        sources[name] = Source(path, "loo")
    return sources


def prepared_dataset(
    source: Path, prepared: Path, options: tuple[str, ...], text_encoder: str
) -> Path:
    """`source` itself when it is a prepared dataset, else `prepared`, prepared once with
    `options` and `text_encoder`."""
    if (source / "manifest.json").exists():
        if text_encoder != "word2vec":
            raise SystemExit(
                f"{source} is already prepared: the {text_encoder} models need a raw source"
            )
        return source
    if not DatasetLayout(prepared).is_current():
        evorec(
            "data", "prepare", str(source), "--out", str(prepared), *options,
            "--text-encoder", text_encoder,
        )  # fmt: skip
    return prepared


def evaluated_as(model: str) -> tuple[str, str]:
    """The `evorec evaluate` model name of a grid model and its dataset's text encoder."""
    encoder, plus, sources = model.partition(FUSED)
    fused = plus + sources
    if encoder.endswith(MINILM):
        return encoder.removesuffix(MINILM) + "-text" + fused, "minilm"
    return model, "word2vec"


def runs_protocol(model: str, protocol: str) -> bool:
    """Whether `model` runs under `protocol`: cold start only for baselines and text models,
    a fused model under leave-one-out only."""
    if FUSED in model:
        return protocol == "loo"
    text = evaluated_as(model)[0].endswith("-text")
    return protocol != "cold-start" or model in BASELINES or text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--only", help="datasets to run (default: all, or the --source ones)")
    parser.add_argument(
        "--source", action="append", default=[], metavar="NAME=PATH", help="another dataset"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks-out")
    parser.add_argument(
        "--protocols", help="run only these of each dataset's protocols (loo, cold-start)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the report of a run already in --out (same options assumed), so that a "
        "grid run in parts, or stopped, is completed and tabled whole",
    )
    args, evaluate_options = parser.parse_known_args(argv)
    added = added_sources(args.source)
    sources = {**SOURCES, **added}
    for name in (args.only or ",".join(added or SOURCES)).split(","):
        source = sources[name]
        merged: dict[str, dict[str, dict[str, Any]]] = {}
        for model in args.models.split(","):
            evaluated, text_encoder = evaluated_as(model)
            suffix = "" if text_encoder == "word2vec" else f"-{text_encoder}"
            prepared = prepared_dataset(
                args.datasets / source.path,
                args.out / "datasets" / f"{name}{suffix}",
                source.prepare,
                text_encoder,
            )
            # A baseline is deterministic: one run; an encoder: one run per seed.
            seeds = ["0"] if model in BASELINES else args.seeds.split(",")
            protocols = [
                p
                for p in source.protocols.split(",")
                if runs_protocol(model, p) and p in (args.protocols or p).split(",")
            ]
            for seed, protocol in itertools.product(seeds, protocols):
                run = f"{model}-seed{seed}-{protocol}"
                report = args.out / name / f"{run}.json"
                if args.resume and report.exists():
                    print(f"{name}: {run} reused from {report}")
                else:
                    evorec(
                        "evaluate", str(prepared), "--models", evaluated, "--seeds", seed,
                        "--protocols", protocol, "--json", str(report),
                        "--plots", str(args.out / name / run), *evaluate_options,
                    )  # fmt: skip
                for result in json.loads(report.read_text())[protocol]:
                    kept = merged.setdefault(protocol, {}).setdefault(
                        model, {"model": model, "runs": [], "training": []}
                    )
                    kept["runs"] += result["runs"]
                    kept["training"] += result["training"]
        tables = {protocol: list(models.values()) for protocol, models in merged.items()}
        (args.out / f"{name}.json").write_text(json.dumps(tables, indent=2) + "\n")
        print(f"\n### {name}\n")
        for protocol, results in tables.items():
            print_table(protocol, results)


def print_table(protocol: str, results: list[dict[str, Any]]) -> None:
    """One row per model: mean ± standard deviation over its seeds, each seed's value in
    brackets; then the encoders' training cost per seed."""
    shown = ("ndcg@10", "hr@10", "mrr", "recall@10", "recall@20", "js_divergence")
    keys = [k for k in shown if k in results[0]["runs"][0]]
    print(f"{protocol} (mean ± sd [per seed]):\n\n| model | seeds | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for result in results:
        runs = result["runs"]
        cells = []
        for key in keys:
            values = [r[key] for r in runs]
            seeds = ", ".join(f"{v:.4f}" for v in values)
            cells.append(f"{statistics.mean(values):.4f} ± {spread(values):.4f} [{seeds}]")
        print(f"| {result['model']} | {len(runs)} | " + " | ".join(cells) + " |")
    trained = [r for r in results if r.get("training")]
    if trained:
        print(
            "\n| model | valid NDCG@10 | best epoch (of each member) | epochs | wall time (s) "
            "| s/epoch | median s/epoch | CPU time (s) "
            "| peak resident memory of its process (MiB) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for result in trained:
            runs = result["training"]
            columns = [
                ", ".join(f"{r['valid']['ndcg@10']:.4f}" if r.get("valid") else "" for r in runs),
                ", ".join(best_epochs(r) for r in runs),
                ", ".join(str(r["epochs"]) for r in runs),
                ", ".join(f"{r['seconds']:.0f}" for r in runs),
                ", ".join(f"{r['seconds_per_epoch']:.1f}" for r in runs),
                ", ".join(f"{r['median_seconds_per_epoch']:.1f}" for r in runs),
                ", ".join(f"{r['cpu_seconds']:.0f}" for r in runs),
                ", ".join(f"{r['peak_memory_mib']:.0f}" for r in runs),
            ]
            print(f"| {result['model']} | " + " | ".join(columns) + " |")
    print()


def best_epochs(run: dict[str, Any]) -> str:
    """A run's best epoch, or with a seed ensemble each member's (`61/74/89`)."""
    members = run.get("members") or []
    if members:
        return "/".join(str(m["best_epoch"]) for m in members)
    return str(run["best_epoch"])


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


if __name__ == "__main__":
    main()
