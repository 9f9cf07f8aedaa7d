"""The exact and the approximate vector index side by side, by table size: search time per
query, recall of the approximate index against the exact one, build time; and the size from
which the approximate index is faster (the default of `IndexSettings.exact_below`).

    .venv/bin/python scripts/bench_vector_index.py [--sizes 10000 30000 100000 300000]
        [--dimension 64] [--queries 200] [--trained VECTORS.npz | --text-vectors DATASET]
        [--config KEY=VALUE[,KEY=VALUE...] ...] [--json OUT]

Without --trained or --text-vectors the vectors are clustered like item embeddings (1,000
Gaussian clusters, noise of 0.7 of a centre's scale); the queries are vectors of the same
mixture, and each search excludes 1% of the rows at random (a request's seen and excluded
items). With --trained, the item table and users' vectors of a trained model
(`scripts/bench_catalog.py --vectors VECTORS.npz` saves them), each user's history excluded
as ranking excludes seen items; a size below the table's is a random sample of its rows (the
same rows for every configuration). With --text-vectors, what `SimilarItems` searches: a
prepared dataset's unit text vectors, queried with some of its items' own vectors, each
excluded from its own answer. The indexes do not rank alike on synthetic and on trained
vectors (BENCHMARKS.md, "Large catalogs": the HNSW graph finds 0.99 of the top 10 on the
clustered vectors, 0.42 on a trained table of 100,000 items), so settings are chosen on
trained ones.

Each --config is a set of `IndexSettings` fields (e.g. `approximate=hnsw,ef_search=512`;
default: the settings' defaults), measured in turn on the same tables and queries. Each
search asks for the top 200 (ranking's `candidates_per_source`) and the top 10. One thread:
numpy's BLAS and faiss's OpenMP are held to one, as in the services.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from evorec.data.artifacts import DatasetLayout
from evorec.vector_index import ExactIndex, build_index, recall_at
from evorec.vector_index_settings import IndexSettings

Search = Callable[[np.ndarray, int, np.ndarray], tuple[np.ndarray, np.ndarray]]


def clustered(
    rng: np.random.Generator, rows: int, dimension: int, centres: np.ndarray
) -> np.ndarray:
    picked = centres[rng.integers(0, len(centres), rows)]
    return (picked + 0.7 * rng.normal(size=(rows, dimension))).astype(np.float32)


def synthetic(
    size: int, dimension: int, queries: int
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Clustered rows, queries of the same mixture, each with 1% of the rows excluded."""
    rng = np.random.default_rng(size)
    centres = rng.normal(size=(1_000, dimension))
    vectors = clustered(rng, size, dimension, centres)
    asked = clustered(rng, queries, dimension, centres)
    allowed = rng.random(size) >= 0.01
    return vectors, asked, [allowed] * queries


def trained(path: Path, size: int, queries: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """`size` rows of a trained item table (all of it, or a random sample; row 0, the
    padding, left out), up to `queries` users' vectors, each user's history excluded."""
    saved = np.load(path)
    table, users = saved["table"], saved["users"][:queries]
    histories = np.split(saved["history_items"], np.cumsum(saved["history_lengths"])[:-1])
    rows = np.arange(1, len(table))
    if size < len(rows):
        rows = np.sort(np.random.default_rng(size).choice(rows, size, replace=False))
    position = np.full(len(table), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    masks = []
    for history in histories[: len(users)]:
        allowed = np.ones(len(rows), dtype=bool)
        seen = position[history]
        allowed[seen[seen >= 0]] = False
        masks.append(allowed)
    return np.ascontiguousarray(table[rows]), users, masks


def text_vectors(
    dataset: Path, size: int, queries: int
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """`SimilarItems`' search: `size` rows of a prepared dataset's unit text vectors (all of
    them, or a random sample; row 0, the padding, left out), queried with `queries` of
    those rows' own vectors, each row excluded from its own answer."""
    table = np.load(DatasetLayout(dataset).item_vectors).astype(np.float32)
    rows = np.arange(1, len(table))
    if size < len(rows):
        rows = np.sort(np.random.default_rng(size).choice(rows, size, replace=False))
    vectors = np.ascontiguousarray(table[rows])
    asked = np.random.default_rng(0).choice(len(rows), min(queries, len(rows)), replace=False)
    masks = []
    for row in asked:
        allowed = np.ones(len(rows), dtype=bool)
        allowed[row] = False
        masks.append(allowed)
    return vectors, vectors[asked], masks


def timed_searches(
    search: Search, queries: np.ndarray, masks: list[np.ndarray], k: int
) -> tuple[float, list[np.ndarray]]:
    found = []
    times = []
    for query, allowed in zip(queries, masks, strict=True):
        started = time.perf_counter()
        rows, _ = search(query, k, allowed)
        times.append(time.perf_counter() - started)
        found.append(rows)
    return statistics.median(times) * 1000, found


def measure(
    vectors: np.ndarray,
    queries: np.ndarray,
    masks: list[np.ndarray],
    configs: list[IndexSettings],
) -> list[dict[str, Any]]:
    """One row of figures per configuration, on the same table and queries."""
    exact = ExactIndex(vectors)
    truth = {k: timed_searches(exact.search, queries, masks, k) for k in (10, 200)}
    results = []
    for settings in configs:
        started = time.perf_counter()
        index = build_index(vectors, settings.model_copy(update={"exact_below": 1}))
        build_s = time.perf_counter() - started
        figures: dict[str, Any] = {
            "rows": len(vectors),
            "index": index.description,
            "settings": settings.model_dump(),
            "build_s": build_s,
        }
        for k in (10, 200):
            exact_ms, expected = truth[k]
            approximate_ms, found = timed_searches(index.search, queries, masks, k)
            recall = statistics.mean(recall_at(e, f) for e, f in zip(expected, found, strict=True))
            figures.update(
                {
                    f"exact_ms_k{k}": exact_ms,
                    f"approximate_ms_k{k}": approximate_ms,
                    f"recall_k{k}": recall,
                }
            )
        results.append(figures)
    return results


def config(text: str) -> IndexSettings:
    """`key=value,key=value` as IndexSettings (the rest at their defaults)."""
    fields = dict(part.split("=", 1) for part in text.split(",") if part)
    return IndexSettings.model_validate(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000, 300_000])
    parser.add_argument("--dimension", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--trained", type=Path, help="a trained table's vectors (.npz)")
    parser.add_argument(
        "--text-vectors", type=Path, help="a prepared dataset: search its unit text vectors"
    )
    parser.add_argument(
        "--config", type=config, action="append", help="IndexSettings fields, key=value,..."
    )
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    configs = args.config or [IndexSettings()]
    if args.trained:
        print(f"vectors: the trained table and users of {args.trained}; users' histories excluded")
    elif args.text_vectors:
        print(
            f"vectors: the unit text vectors of {args.text_vectors}; each query's own row excluded"
        )
    else:
        print(f"vectors: clustered, dimension {args.dimension}; 1% of rows excluded")
    print(
        "| rows | index | exact ms k=10 / k=200 | approximate ms k=10 / k=200 | recall@10 "
        "| recall@200 | build s |"
        "\n|---|---|---|---|---|---|---|"
    )
    results = []
    with threadpool_limits(limits=1):
        for size in args.sizes:
            if args.trained:
                vectors, queries, masks = trained(args.trained, size, args.queries)
            elif args.text_vectors:
                vectors, queries, masks = text_vectors(args.text_vectors, size, args.queries)
            else:
                vectors, queries, masks = synthetic(size, args.dimension, args.queries)
            for f in measure(vectors, queries, masks, configs):
                results.append(f)
                print(
                    f"| {f['rows']:,} | {f['index']} | {f['exact_ms_k10']:.2f} / "
                    f"{f['exact_ms_k200']:.2f} | {f['approximate_ms_k10']:.2f} / "
                    f"{f['approximate_ms_k200']:.2f} | {f['recall_k10']:.3f} | "
                    f"{f['recall_k200']:.3f} | {f['build_s']:.1f} |",
                    flush=True,
                )
    for settings in configs:
        mine = [f for f in results if f["settings"] == settings.model_dump()]
        faster = [f["rows"] for f in mine if f["approximate_ms_k200"] < f["exact_ms_k200"]]
        print(
            f"{mine[0]['index'] if mine else settings}: faster than exact at k=200 from "
            + (f"{min(faster):,.0f} rows" if faster else "none of the sizes measured")
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
