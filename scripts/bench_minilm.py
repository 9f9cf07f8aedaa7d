"""Benchmark of the MiniLM text encoder on the CPU: how many texts per second it embeds, and
what `evorec data prepare --text-encoder minilm` costs next to the Word2Vec default.

    .venv/bin/python scripts/bench_minilm.py [--datasets ../shared/datasets]
        [--sources PATH,PATH] [--texts REVIEWS.json[.gz]] [--minilm-dir DIR] [--json]

By default it embeds the ml-100k item texts (titles and genres) and the Amazon Magazine
Subscriptions reviews, each in one pass of `MiniLMEncoder.embed_many` (batches of 32, sorted by
length) after a warm-up batch, then prepares ml-100k and the Amazon Magazine Subscriptions
reviews (with their metadata) twice each: --text-encoder word2vec, then minilm. --sources
(datasets to prepare and whose item texts are embedded) and --texts (JSON lines with a
`reviewText`) point it elsewhere, e.g. at a small simulated dataset for the test suite's smoke
run. The model files are those `make models` fetched. Prints a Markdown table, and JSON with
--json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from evorec.data.readers import read_dataset
from evorec.data.schema import item_document
from evorec.embedding.minilm import BATCH_SIZE, MiniLMEncoder
from evorec.preparation import PrepareOptions, prepare

ROOT = Path(__file__).resolve().parent.parent
AMAZON = Path("amazon") / "Magazine_Subscriptions_5.json.gz"


def review_texts(path: Path) -> list[str]:
    """The non-empty `reviewText` of each line of an Amazon review file (gzipped or not)."""
    import gzip

    with gzip.open(path, "rt") if path.suffix == ".gz" else path.open() as lines:
        texts = (json.loads(line).get("reviewText", "") for line in lines)
        return [text for text in texts if text]


def throughput(encoder: MiniLMEncoder, name: str, texts: list[str]) -> dict[str, object]:
    started = time.perf_counter()
    _, counts = encoder.embed_many(texts)
    seconds = time.perf_counter() - started
    return {
        "texts": name,
        "count": len(texts),
        "mean_chars": round(statistics.mean(len(t) for t in texts)),
        "mean_word_pieces": round(float(counts.mean()), 1),
        "seconds": round(seconds, 2),
        "texts_per_s": round(len(texts) / seconds, 1),
    }


def time_prepare(source: Path, out: Path, options: PrepareOptions) -> dict[str, object]:
    started = time.perf_counter()
    raw = read_dataset(source)
    manifest = prepare(raw, out, options)
    return {
        "dataset": raw.name,
        "text_encoder": options.text_encoder,
        "events": manifest["counts"]["events"],
        "items": manifest["counts"]["items"],
        "items_with_text_vector": manifest["counts"]["items_with_text_vector"],
        "seconds": round(time.perf_counter() - started, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--sources", help="datasets to prepare (default: ml-100k, amazon)")
    parser.add_argument("--texts", type=Path, help="reviews to embed (default: amazon)")
    parser.add_argument(
        "--minilm-dir", type=Path, default=ROOT / "evorec-data" / "text-models" / "minilm"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sources = (
        [Path(p) for p in args.sources.split(",")]
        if args.sources
        else [args.datasets / "ml-100k", args.datasets / AMAZON]
    )
    import tensorflow as tf  # imported before the clock starts: the load is the model's own

    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "tensorflow": tf.__version__,
        "batch_size": BATCH_SIZE,
        "load_average_at_start": [round(v, 1) for v in os.getloadavg()],
    }
    started = time.perf_counter()
    encoder = MiniLMEncoder.load(args.minilm_dir)
    results["load_seconds"] = round(time.perf_counter() - started, 2)
    item_texts = [
        item_document(row.title, row.text, row.categories)
        for row in read_dataset(sources[0]).items.itertuples()
    ]
    reviews = review_texts(args.texts or args.datasets / AMAZON)
    started = time.perf_counter()
    encoder.embed_many(reviews[:BATCH_SIZE])
    results["warm_up_seconds"] = round(time.perf_counter() - started, 2)
    results["throughput"] = [
        throughput(encoder, f"item texts of {sources[0].name}", item_texts),
        throughput(encoder, f"reviews of {(args.texts or AMAZON).name}", reviews),
    ]
    prepared = []
    with tempfile.TemporaryDirectory() as tmp:
        for number, source in enumerate(sources):
            for text_encoder in ("word2vec", "minilm"):
                options = PrepareOptions(
                    text_encoder=text_encoder,  # type: ignore[arg-type]
                    minilm_dir=args.minilm_dir if text_encoder == "minilm" else None,
                )
                out = Path(tmp) / f"{number}-{text_encoder}"
                prepared.append(time_prepare(source, out, options))
    results["prepare"] = prepared
    results["load_average_at_end"] = [round(v, 1) for v in os.getloadavg()]
    if args.json:
        print(json.dumps(results, indent=2))
    print(
        "1-minute load average (start, end; other jobs share the machine): "
        f"{results['load_average_at_start'][0]}, {results['load_average_at_end'][0]}"
    )
    print("| measure | value |\n|---|---|")
    print(f"| model load (weights, Keras graph and its trace; TensorFlow imported before) | "
          f"{results['load_seconds']} s |")  # fmt: skip
    print(f"| first batch of {BATCH_SIZE} reviews | {results['warm_up_seconds']} s |")
    for row in results["throughput"]:  # type: ignore[attr-defined]
        print(
            f"| embed {row['count']:,} {row['texts']} (mean {row['mean_chars']} characters, "
            f"{row['mean_word_pieces']} word pieces), batches of {BATCH_SIZE} | "
            f"{row['texts_per_s']:,} texts/s |"
        )
    for row in prepared:
        print(
            f"| `evorec data prepare --text-encoder {row['text_encoder']}` {row['dataset']} "
            f"({row['events']:,} events, {row['items']:,} items, "
            f"{row['items_with_text_vector']:,} with a text vector) | {row['seconds']} s |"
        )


if __name__ == "__main__":
    main()
