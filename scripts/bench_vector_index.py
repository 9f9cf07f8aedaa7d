"""The exact and the approximate vector index side by side, by table size: search time per
query, recall of the approximate index against the exact one, build time; and the size from
which the approximate index is faster (the default of `IndexSettings.exact_below`).

    .venv/bin/python scripts/bench_vector_index.py [--sizes 10000 30000 100000 300000]
        [--dimension 64] [--queries 200] [--json OUT]

The vectors are clustered like item embeddings (1,000 Gaussian clusters, noise of 0.7 of a
centre's scale; random unclustered vectors are the hardest case for a graph index and unlike
trained ones); the queries are vectors of the same mixture. Each search excludes 1% of the
rows at random (a request's seen and excluded items) and asks for the top 200 (ranking's
`candidates_per_source`) and the top 10. One thread: numpy's BLAS and faiss's OpenMP are held
to one, as in the services.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from evorec.vector_index import ExactIndex, HnswIndex, recall_at
from evorec.vector_index_settings import IndexSettings


def clustered(
    rng: np.random.Generator, rows: int, dimension: int, centres: np.ndarray
) -> np.ndarray:
    picked = centres[rng.integers(0, len(centres), rows)]
    return (picked + 0.7 * rng.normal(size=(rows, dimension))).astype(np.float32)


def timed_searches(
    search: object, queries: np.ndarray, allowed: np.ndarray, k: int
) -> tuple[float, list[np.ndarray]]:
    found = []
    times = []
    for query in queries:
        started = time.perf_counter()
        rows, _ = search(query, k, allowed)  # type: ignore[operator]
        times.append(time.perf_counter() - started)
        found.append(rows)
    return statistics.median(times) * 1000, found


def measure(size: int, dimension: int, queries: int, settings: IndexSettings) -> dict[str, float]:
    rng = np.random.default_rng(size)
    centres = rng.normal(size=(1_000, dimension))
    vectors = clustered(rng, size, dimension, centres)
    asked = clustered(rng, queries, dimension, centres)
    allowed = rng.random(size) >= 0.01
    exact = ExactIndex(vectors)
    started = time.perf_counter()
    graph = HnswIndex(vectors, settings.model_copy(update={"exact_below": 1}))
    build_s = time.perf_counter() - started
    figures: dict[str, float] = {"rows": size, "build_s": build_s}
    for k in (10, 200):
        exact_ms, truth = timed_searches(exact.search, asked, allowed, k)
        graph_ms, found = timed_searches(graph.search, asked, allowed, k)
        recall = statistics.mean(recall_at(t, f) for t, f in zip(truth, found, strict=True))
        figures.update(
            {f"exact_ms_k{k}": exact_ms, f"hnsw_ms_k{k}": graph_ms, f"recall_k{k}": recall}
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000, 300_000])
    parser.add_argument("--dimension", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    settings = IndexSettings()
    print(
        f"dimension {args.dimension}; HNSW links {settings.hnsw_links}, efConstruction "
        f"{settings.ef_construction}, efSearch max({settings.ef_search}, k); 1% of rows excluded"
    )
    print(
        "| rows | exact ms k=10 / k=200 | HNSW ms k=10 / k=200 | recall@10 | recall@200 "
        "| HNSW build s |"
        "\n|---|---|---|---|---|---|"
    )
    results = []
    with threadpool_limits(limits=1):
        for size in args.sizes:
            f = measure(size, args.dimension, args.queries, settings)
            results.append(f)
            print(
                f"| {size:,} | {f['exact_ms_k10']:.2f} / {f['exact_ms_k200']:.2f} | "
                f"{f['hnsw_ms_k10']:.2f} / {f['hnsw_ms_k200']:.2f} | {f['recall_k10']:.3f} | "
                f"{f['recall_k200']:.3f} | {f['build_s']:.1f} |",
                flush=True,
            )
    faster = [f["rows"] for f in results if f["hnsw_ms_k200"] < f["exact_ms_k200"]]
    print(
        "approximate faster at k=200 from: "
        + (f"{min(faster):,.0f} rows" if faster else "none of the sizes measured")
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
