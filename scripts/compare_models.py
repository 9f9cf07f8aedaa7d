"""The classic comparison grid: {no text, Word2Vec text} x {LSTM, Transformer} and the
baselines, on ml-100k and an Amazon dataset, under leave-one-out with full ranking and seen
items excluded; the text cold-start split on the Amazon data. Prints Markdown tables.

    .venv/bin/python scripts/compare_models.py [--datasets ../shared/datasets] [--seeds 0,1,2]
        [--only ml-100k] [--models transformer-text,popular] [--out benchmarks-out]
        [--source NAME=PATH]... [--resume]
        [any option of `evorec evaluate`, e.g. --patience 10 --heads 2]

`--source` adds a dataset of one's own (evaluated under leave-one-out; PATH relative to
--datasets, or absolute; a folder with a manifest.json is taken as already prepared), and
then only the added ones run unless --only names others: the test suite's smoke run points
it at a small simulated dataset. Each dataset is prepared first (evorec data prepare with
defaults) unless it already is; the encoders are trained
with `evorec evaluate`'s defaults, which are `evorec.encoder.config`'s, unless an option
after the script's own says otherwise. Each model and seed runs in its own `evorec evaluate`
process, so the peak resident memory reported for a run is its own, not the high-water mark
of the runs before it. With `--resume`, a model and seed whose report is already in --out
(from an earlier run of the same command, stopped or split over several invocations) is not
run again: its report is read and enters the tables as it is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ("popular", "item-cosine", "markov")
MODELS = "popular,item-cosine,markov,transformer-text,transformer,lstm-text,lstm"
SOURCES = {
    "ml-100k": ("ml-100k", "loo"),
    "amazon-magazines": ("amazon/Magazine_Subscriptions_5.json.gz", "loo,cold-start"),
}


def evorec(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "evorec", *args], cwd=ROOT, check=True)


def added_sources(entries: list[str]) -> dict[str, tuple[str, str]]:
    """`--source NAME=PATH` entries as SOURCES entries, under leave-one-out."""
    sources = {}
    for entry in entries:
        name, _, path = entry.partition("=")
        if not name or not path:
            raise SystemExit(f"--source {entry!r}: expected NAME=PATH")
        sources[name] = (path, "loo")
    return sources


def prepared_dataset(source: Path, prepared: Path) -> Path:
    """`source` itself when it is a prepared dataset, else `prepared`, prepared once."""
    if (source / "manifest.json").exists():
        return source
    if not (prepared / "manifest.json").exists():
        evorec("data", "prepare", str(source), "--out", str(prepared))
    return prepared


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
    parser.add_argument("--resume", action="store_true", help="reuse the reports already in --out")
    args, evaluate_options = parser.parse_known_args(argv)
    added = added_sources(args.source)
    sources = {**SOURCES, **added}
    for name in (args.only or ",".join(added or SOURCES)).split(","):
        source, protocols = sources[name]
        prepared = prepared_dataset(args.datasets / source, args.out / "datasets" / name)
        merged: dict[str, dict[str, dict[str, Any]]] = {}
        for model in args.models.split(","):
            # A baseline is deterministic: one run; an encoder: one run per seed.
            seeds = ["0"] if model in BASELINES else args.seeds.split(",")
            for seed in seeds:
                run = f"{model}-seed{seed}"
                report = args.out / name / f"{run}.json"
                if args.resume and report.exists():
                    print(f"{run}: the report in {report} (--resume)")
                else:
                    evorec(
                        "evaluate", str(prepared), "--models", model, "--seeds", seed,
                        "--protocols", protocols, "--json", str(report),
                        "--plots", str(args.out / name / run), *evaluate_options,
                    )  # fmt: skip
                for protocol, results in json.loads(report.read_text()).items():
                    for result in results:
                        kept = merged.setdefault(protocol, {}).setdefault(
                            result["model"], {"model": result["model"], "runs": [], "training": []}
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
            "\n| model | valid NDCG@10 | best epoch (of each member) | wall time (s) | s/epoch "
            "| peak resident memory of its process (MiB) |"
        )
        print("|---|---|---|---|---|---|")
        for result in trained:
            runs = result["training"]
            columns = [
                ", ".join(f"{r['valid']['ndcg@10']:.4f}" if r.get("valid") else "" for r in runs),
                ", ".join(best_epochs(r) for r in runs),
                ", ".join(f"{r['seconds']:.0f}" for r in runs),
                ", ".join(f"{r['seconds_per_epoch']:.1f}" for r in runs),
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
