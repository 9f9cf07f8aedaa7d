"""Benchmarks of the data and text part: preparation time on real datasets, and throughput of
NormalizeText and GetItemVectors through real services on loopback.

    .venv/bin/python scripts/bench_data.py [--datasets ../shared/datasets] [--seconds 10]
        [--sources PATH,PATH] [--texts REVIEWS.json[.gz]]

By default it prepares ml-100k and the Amazon Magazine Subscriptions reviews under
--datasets, and sends those reviews' texts to NormalizeText; --sources (datasets to prepare;
the first one's items serve GetItemVectors) and --texts (JSON lines with a `reviewText`) point
it elsewhere, e.g. at a small simulated dataset for the test suite's smoke run.

The services run as `evorec serve` processes, the load comes from this process (asyncio,
several calls in flight). Prints what it measured as a Markdown table, and as JSON with --json.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from evorec.data.readers import read_dataset
from evorec.platform.probes import free_port, wait_until_serving
from evorec.preparation import prepare
from evorec.v1 import embedding_pb2, embedding_pb2_grpc, preprocess_pb2, preprocess_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent


def time_prepare(source: Path, out: Path) -> dict[str, object]:
    started = time.perf_counter()
    raw = read_dataset(source)
    manifest = prepare(raw, out)
    return {
        "dataset": raw.name,
        "events": manifest["counts"]["events"],
        "items": manifest["counts"]["items"],
        "seconds": round(time.perf_counter() - started, 2),
    }


async def saturate(
    call: Callable[[], Awaitable[int]], seconds: float, concurrency: int
) -> tuple[float, list[float]]:
    """Runs `call` from `concurrency` workers for `seconds`; returns units/s and latencies."""
    latencies: list[float] = []
    units = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal units
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            done = await call()  # (`units += await call()` would lose concurrent updates)
            units += done
            latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return units / (time.perf_counter() - started), latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure_services(
    env: dict[str, str], texts: list[str], item_ids: list[str], seconds: float
) -> dict[str, object]:
    pre = preprocess_pb2_grpc.PreprocessServiceStub(
        grpc.aio.insecure_channel(f"127.0.0.1:{env['EVOREC_PREPROCESS__PORT']}")
    )
    emb = embedding_pb2_grpc.EmbeddingServiceStub(
        grpc.aio.insecure_channel(f"127.0.0.1:{env['EVOREC_EMBEDDING__PORT']}")
    )
    batch = texts[:100]
    ids = item_ids[:100]

    async def normalize_batch() -> int:
        await pre.NormalizeText(preprocess_pb2.NormalizeTextRequest(texts=batch))
        return len(batch)

    async def normalize_one() -> int:
        await pre.NormalizeText(preprocess_pb2.NormalizeTextRequest(texts=batch[:1]))
        return 1

    async def vectors_batch() -> int:
        await emb.GetItemVectors(embedding_pb2.GetItemVectorsRequest(item_ids=ids))
        return len(ids)

    await normalize_batch()
    await vectors_batch()
    texts_per_s, _ = await saturate(normalize_batch, seconds, 4)
    _, single = await saturate(normalize_one, seconds / 2, 1)
    vectors_per_s, _ = await saturate(vectors_batch, seconds, 4)
    mean_chars = statistics.mean(len(t) for t in batch)
    return {
        "normalize_texts_per_s": round(texts_per_s),
        "normalize_batch": len(batch),
        "normalize_mean_chars": round(mean_chars),
        "normalize_one_p50_ms": round(percentile(single, 0.5) * 1000, 2),
        "normalize_one_p99_ms": round(percentile(single, 0.99) * 1000, 2),
        "item_vectors_batch": len(ids),
        "item_vectors_per_s": round(vectors_per_s),
    }


AMAZON = Path("amazon") / "Magazine_Subscriptions_5.json.gz"


def review_texts(path: Path) -> list[str]:
    """The non-empty `reviewText` of each line of an Amazon review file (gzipped or not)."""
    with gzip.open(path, "rt") if path.suffix == ".gz" else path.open() as lines:
        texts = (json.loads(line).get("reviewText", "") for line in lines)
        return [text for text in texts if text]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--sources", help="datasets to prepare (default: ml-100k, amazon)")
    parser.add_argument("--texts", type=Path, help="reviews for NormalizeText (default: amazon)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sources = (
        [Path(p) for p in args.sources.split(",")]
        if args.sources
        else [args.datasets / "ml-100k", args.datasets / AMAZON]
    )
    results: dict[str, object] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        outs = [work / f"dataset-{number}" for number in range(len(sources))]
        prepared = [time_prepare(source, out) for source, out in zip(sources, outs, strict=True)]
        results["prepare"] = prepared
        texts = review_texts(args.texts or args.datasets / AMAZON)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
        env.update(
            EVOREC_DATA_DIR=str(work / "data"),
            EVOREC_DATASET=str(outs[0]),
            EVOREC_LOG_LEVEL="WARNING",
        )
        for name in ("preprocess", "embedding"):
            env[f"EVOREC_{name.upper()}__PORT"] = str(free_port())
            env[f"EVOREC_{name.upper()}__METRICS_PORT"] = "0"
        processes = []
        try:
            for name in ("preprocess", "embedding"):
                process = subprocess.Popen([sys.executable, "-m", "evorec", "serve", name], env=env)
                processes.append(process)
                wait_until_serving(
                    f"127.0.0.1:{env[f'EVOREC_{name.upper()}__PORT']}", process=process
                )
            import pandas as pd

            item_ids = pd.read_parquet(outs[0] / "items.parquet")["item_id"].tolist()
            services = asyncio.run(measure_services(env, texts, item_ids, args.seconds))
            results["services"] = services
        finally:
            for process in processes:
                process.terminate()
                process.wait()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"machine: {results['machine']}")
    print("| measure | value |\n|---|---|")
    for row in prepared:
        shape = f"{row['events']:,} events, {row['items']:,} items"
        print(f"| prepare {row['dataset']} ({shape}) | {row['seconds']} s |")
    for label, value in (
        (
            f"NormalizeText, batches of {services['normalize_batch']} reviews "
            f"(mean {services['normalize_mean_chars']} chars), 4 in flight",
            f"{services['normalize_texts_per_s']:,} texts/s",
        ),
        (
            "NormalizeText, one review per call, 1 in flight: p50 / p99",
            f"{services['normalize_one_p50_ms']} / {services['normalize_one_p99_ms']} ms",
        ),
        (
            f"GetItemVectors, batches of {services['item_vectors_batch']} ids (dim 64), "
            "4 in flight",
            f"{services['item_vectors_per_s']:,} vectors/s",
        ),
    ):
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
