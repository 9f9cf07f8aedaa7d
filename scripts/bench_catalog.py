"""Benchmarks of one catalog size: a simulated catalog of N items is prepared, a model trained
briefly and exported, the four services started, and measured: recall of the approximate
vector index against exact search, Recommend throughput and p50/p99, each service's memory
and start-up time, the export's size, training time per epoch, and small requests' latency
while requests at the limits run.

    .venv/bin/python scripts/bench_catalog.py --items N [--json OUT] [--users 1000]
        [--events-per-user 200] [--epochs 1] [--loss sampled] [--seconds 15] [--work DIR]
        [--prepare-only | --recall-only] [--vectors VECTORS.npz]

The simulator (`evorec.data.synth`, 20 topics) makes the catalog and users, and every item
the users did not touch gets one view by a user drawn at random (preparation keeps only items
with events, and the catalog must hold all N); preparation trains
word vectors with one pass (`Word2VecOptions(epochs=1)`: the figures are of speed and size,
not text quality). The encoder is the reported transformer with text (d=64, 2 blocks, max
length 200), trained for --epochs (each epoch also scores every validation user against
every item, as training does) with the sampled softmax (1,000 negatives) by default, the loss
meant for catalogs too large for a full one (--loss full for the full softmax); the time per
epoch is reported as wall-clock and as the process's CPU time. The recall figures compare
the approximate vector index (the kind and settings the services read from
`EVOREC_INDEX__...`, forced on whatever the size) with exact search at k=10 and k=200
(ranking's candidates per source), twice: as ranking's encoder source searches (the
exported item table, 200 users' vectors from the SavedModel, their seen items excluded) and
as `SimilarItems` does (the unit text vectors, 200 items' own vectors, each item excluded).
Which index the services use follows `EVOREC_INDEX__EXACT_BELOW`.

--recall-only stops after the recall figures, without the export or the services: the item
table and users' vectors come from the export's own serving module in this process (the
same functions the SavedModel runs), so a trained table's recall costs the preparation and
the training only. --vectors saves that table and those users' vectors (with their
histories) for `scripts/bench_vector_index.py --trained`, which compares index settings on
them.

Load comes from this process over loopback (stored users, k=10): --workers callers back to
back for --seconds (throughput, p50, p99), then --rate requests/s offered (p50, p99). The
limits phase sends, for --seconds, small requests at 20/s while heavy ones run back to back
on another connection (k=1,000; an inline history of 10,000 items; 1,000 topics in a filter;
SimilarItems with k=1,000 and 10,000 excluded ids) and reports both sides: the small ones'
p50/p99 and the heavy ones' latencies and status codes. Memory is each service process's
resident set (VmRSS) and its peak (VmHWM) at the end; start-up is from launching the process
to SERVING on its health check. --work keeps the dataset in DIR and reuses it when present
(--prepare-only stops after preparing), so that a large catalog's preparation can run before,
and apart from, the timed run; it keeps the export too (DIR/models), and a later run on the
same DIR reuses it (if made of the same dataset with the same --epochs and --loss; else it
stops and says so) and reports the training and export figures of the run that made it (so
that the services can be measured again after a change to them without training and
exporting again: at a million items the export alone takes minutes). Delete DIR/models to
train and export anew.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from evorec.data.artifacts import DatasetLayout
from evorec.data.readers import read_dataset
from evorec.data.synth import SimulatorConfig, simulate
from evorec.embedding.word_vectors import Word2VecOptions
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.platform.config import Settings
from evorec.platform.probes import free_port, wait_until_serving
from evorec.preparation import PrepareOptions, prepare
from evorec.v1 import (
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
)
from evorec.vector_index import ExactIndex, build_index, recall_at
from evorec.vector_index_settings import IndexSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ranking import ingest, offered, percentile, saturate

SERVICES = ("preprocess", "embedding", "interest", "ranking")
RECALL_USERS = 200
SMALL_RATE = 20.0


def dataset(work: Path, args: argparse.Namespace) -> tuple[DatasetLayout, float]:
    """The prepared dataset in `work` (made when absent) and the seconds preparing took."""
    layout = DatasetLayout(work / "dataset")
    if layout.exists():
        return layout, float("nan")
    started = time.perf_counter()
    config = SimulatorConfig(
        users=args.users, items=args.items, topics=20, events_per_user=args.events_per_user
    )
    simulated = simulate(config)
    simulated.write(work / "raw", config)
    covered = with_every_item(simulated.events, simulated.items, config.seed)
    covered.to_csv(work / "raw" / "events.csv", index=False)
    options = PrepareOptions(topics=20, word2vec=Word2VecOptions(epochs=1))
    prepare(read_dataset(work / "raw"), layout.root, options)
    shutil.rmtree(work / "raw")
    return layout, time.perf_counter() - started


def with_every_item(events: pd.DataFrame, items: pd.DataFrame, seed: int) -> pd.DataFrame:
    """`events` and one view of each item that has none (by a user drawn at random, at a
    time drawn from the events' span): preparation keeps only items with events, and the
    catalog measured must hold all N."""
    rng = np.random.default_rng(seed)
    unseen = items.loc[~items["item_id"].isin(events["item_id"]), "item_id"].to_numpy()
    users = events["user_id"].unique()
    low, high = int(events["timestamp"].min()), int(events["timestamp"].max())
    views = pd.DataFrame(
        {
            "event_id": [f"cover{n}" for n in range(len(unseen))],
            "user_id": rng.choice(users, len(unseen)),
            "item_id": unseen,
            "event_type": "view",
            "value": np.nan,
            "text": "",
            "timestamp": rng.integers(low, high + 1, len(unseen)),
        }
    )
    return pd.concat([events, views], ignore_index=True).sort_values("timestamp", kind="stable")


def train(layout: DatasetLayout, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The trainer after args.epochs, and the training figures."""
    from evorec.data.sequences import LeaveOneOut
    from evorec.encoder.model import SequenceEncoder
    from evorec.encoder.training import Trainer

    data = LeaveOneOut.load(layout)
    training = TrainingConfig(epochs=args.epochs, loss=args.loss)
    encoder = EncoderConfig()
    text = np.load(layout.item_vectors)
    model = SequenceEncoder(data.n_items, encoder, text, seed=training.seed)
    trainer = Trainer(model, data, training)
    cpu_started = time.process_time()
    result = trainer.fit()
    cpu_s = time.process_time() - cpu_started
    return trainer, {
        "train_pairs": len(trainer.inputs),
        "epoch_s": statistics.mean(r.seconds for r in result.history),
        # The process's CPU time (all threads) over the whole fit, per epoch: unlike the
        # wall-clock time, not inflated by a pause of the process or by other jobs' load.
        "epoch_cpu_s": cpu_s / max(1, len(result.history)),
        "train_peak_mib": result.peak_memory_mib,
    }


def train_and_export(layout: DatasetLayout, base: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Trains for args.epochs and exports; the training and export figures."""
    from evorec.encoder.export import export_model

    trainer, figures = train(layout, args)
    training = TrainingConfig(epochs=args.epochs, loss=args.loss)
    started = time.perf_counter()
    version_dir = export_model(
        trainer.model, layout, base, "encoder", {"training": training.as_dict()}
    )
    export_s = time.perf_counter() - started
    size = sum(p.stat().st_size for p in version_dir.rglob("*") if p.is_file())
    return {
        "version_dir": version_dir,
        **figures,
        "export_s": export_s,
        "export_mib": size / 2**20,
    }


def exported(layout: DatasetLayout, base: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The training and export figures, with the export's version_dir: those of the export
    kept in `base` when there is one (base/trained.json, written once the export is
    complete) and it was made of the same dataset with the same training options, else of
    a new one; a kept export made otherwise is an error, not silently reused."""
    record = base / "trained.json"
    made_with = {
        "events_sha256": layout.read_manifest()["outputs"]["events.parquet"],
        "epochs": args.epochs,
        "loss": args.loss,
    }
    if record.exists():
        trained: dict[str, Any] = json.loads(record.read_text())
        if trained.pop("made_with", None) != made_with:
            raise SystemExit(
                f"{base} holds an export of another dataset or training ({record}); delete "
                f"{base} to train and export anew"
            )
        print(f"reusing the export in {base}: {trained}", flush=True)
        return trained
    base.mkdir(parents=True, exist_ok=True)
    trained = train_and_export(layout, base, args)
    record.write_text(json.dumps({**trained, "made_with": made_with}, default=str) + "\n")
    print(f"trained and exported: {trained}", flush=True)
    return trained


def exported_vectors(
    version_dir: Path, layout: DatasetLayout
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The exported item table, and RECALL_USERS users' vectors from the SavedModel with
    their histories."""
    import tensorflow as tf

    from evorec.data.sequences import LeaveOneOut
    from evorec.encoder.batch_shapes import right_padded

    table = np.load(version_dir / "assets.extra" / "evorec" / "item_table.npy")
    histories = LeaveOneOut.load(layout).train[:RECALL_USERS]
    model = tf.saved_model.load(str(version_dir))
    batch, length = right_padded(histories)
    users = np.asarray(
        model.signatures["serving_default"](history=tf.constant(batch), length=tf.constant(length))[
            "user_vector"
        ]
    )
    return table, users, histories


def trained_vectors(
    trainer: Any, layout: DatasetLayout
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """What `exported_vectors` reads, computed in this process by the export's own serving
    module (`evorec.encoder.export.serving_module`) without writing the export: the same
    item table and the same users' vectors, without the export's minutes."""
    import tensorflow as tf

    from evorec.data.sequences import LeaveOneOut
    from evorec.encoder.backends import right_padded
    from evorec.encoder.export import serving_module

    module = serving_module(trainer.model)
    histories = LeaveOneOut.load(layout).train[:RECALL_USERS]
    batch, length = right_padded(histories)
    users = module.user_vectors(tf.constant(batch), tf.constant(length))["user_vector"]
    return module.table.numpy(), np.asarray(users), histories


def save_vectors(
    path: Path, table: np.ndarray, users: np.ndarray, histories: list[np.ndarray]
) -> None:
    """The item table, users' vectors and their histories (what a search excludes), for
    `scripts/bench_vector_index.py --trained PATH` to compare index settings on."""
    np.savez(
        path,
        table=table.astype(np.float32),
        users=users.astype(np.float32),
        history_items=np.concatenate(histories).astype(np.int64),
        history_lengths=np.array([len(h) for h in histories], dtype=np.int64),
    )


def index_recall(
    table: np.ndarray, users: np.ndarray, histories: list[np.ndarray], settings: IndexSettings
) -> dict[str, Any]:
    """Recall of the approximate index (the settings' kind, forced on whatever the size)
    against exact search, and its build and search times, for `users` with their
    `histories` excluded, as ranking's encoder source searches; one thread."""
    with threadpool_limits(limits=1):  # numpy's BLAS on one thread, as in the services
        return _index_recall(table, users, histories, settings)


def _index_recall(
    table: np.ndarray, users: np.ndarray, histories: list[np.ndarray], settings: IndexSettings
) -> dict[str, Any]:
    exact = ExactIndex(table)
    started = time.perf_counter()
    approximate = build_index(table, settings.model_copy(update={"exact_below": 1}))
    build_s = time.perf_counter() - started
    figures: dict[str, Any] = {"index_build_s": build_s, "approximate": approximate.description}
    for k in (10, 200):
        recalls, exact_ms, approximate_ms = [], [], []
        for user, history in zip(users, histories, strict=True):
            allowed = np.ones(len(table), dtype=bool)
            allowed[0] = False
            allowed[history] = False
            started = time.perf_counter()
            truth = exact.search(user, k, allowed)[0]
            exact_ms.append(time.perf_counter() - started)
            started = time.perf_counter()
            found = approximate.search(user, k, allowed)[0]
            approximate_ms.append(time.perf_counter() - started)
            recalls.append(recall_at(truth, found))
        figures[f"recall_at_{k}"] = statistics.mean(recalls)
        figures[f"exact_search_ms_k{k}"] = statistics.median(exact_ms) * 1000
        figures[f"approximate_search_ms_k{k}"] = statistics.median(approximate_ms) * 1000
    return figures


def text_recall(layout: DatasetLayout, settings: IndexSettings) -> dict[str, Any]:
    """`index_recall` as `SimilarItems` searches: the items' unit text vectors (the embedding
    service's table), queried with RECALL_USERS items' own vectors, each item excluded from
    its own answer. Keys prefixed `text_`."""
    table = np.load(layout.item_vectors).astype(np.float32)
    asked = np.random.default_rng(0).choice(np.arange(1, len(table)), RECALL_USERS, replace=False)
    figures = index_recall(table, table[asked], [np.array([row]) for row in asked], settings)
    return {f"text_{key}": value for key, value in figures.items()}


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class Services:
    """The four services as `evorec serve` processes on free ports, each start timed."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = dict(env)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.start_s: dict[str, float] = {}

    def start(self, name: str, deadline_s: float) -> None:
        self.env[f"EVOREC_{name.upper()}__PORT"] = str(free_port())
        self.env[f"EVOREC_{name.upper()}__METRICS_PORT"] = "0"
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "evorec", "serve", name], env=self.env)
        self.processes[name] = process
        wait_until_serving(self.target(name), process=process, timeout=deadline_s)
        self.start_s[name] = time.perf_counter() - started

    def target(self, name: str) -> str:
        return f"127.0.0.1:{self.env[f'EVOREC_{name.upper()}__PORT']}"

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            process = self.processes.pop(name)
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def heavy_requests(layout: DatasetLayout, rng: random.Random) -> list[tuple[str, Any]]:
    """Requests at the limits: (what, request) for Recommend or SimilarItems."""
    items = pd.read_parquet(layout.items, columns=["item_id", "topic_id"])
    ids = items["item_id"].astype(str).tolist()
    topics = sorted(set(items["topic_id"].astype(str)) - {""})
    history = ranking_pb2.InlineHistory(
        items=[
            ranking_pb2.HistoryItem(item_id=i, type=common_pb2.EVENT_TYPE_VIEW)
            for i in rng.sample(ids, min(10_000, len(ids)))
        ]
    )
    many_topics = [topics[n % len(topics)] for n in range(1_000)]
    return [
        ("Recommend k=1,000", ranking_pb2.RecommendRequest(user_id="u1", k=1_000)),
        (
            "Recommend, inline history of 10,000 items",
            ranking_pb2.RecommendRequest(history=history, k=10),
        ),
        (
            "Recommend, 1,000 topics in the filter",
            ranking_pb2.RecommendRequest(
                user_id="u1",
                k=10,
                filter=ranking_pb2.RecommendFilter(exclude_topic_ids=many_topics),
            ),
        ),
        (
            "SimilarItems k=1,000, 10,000 excluded ids",
            embedding_pb2.SimilarItemsRequest(
                item_id=ids[0], k=1_000, exclude_item_ids=rng.sample(ids, min(10_000, len(ids)))
            ),
        ),
    ]


async def under_limits(
    ranking: str,
    embedding: str,
    users: list[str],
    heavy: list[tuple[str, Any]],
    seconds: float,
    call_timeout: float,
) -> dict[str, Any]:
    """Small Recommend calls at SMALL_RATE/s, first alone then beside the heavy requests
    sent back to back on other connections; latencies and status codes of both."""

    async def small_calls(stub: ranking_pb2_grpc.RankingServiceStub) -> list[float]:
        latencies: list[float] = []
        start = time.perf_counter()

        async def one(scheduled: float) -> None:
            request = ranking_pb2.RecommendRequest(user_id=random.choice(users), k=10)
            try:
                await stub.Recommend(request, timeout=call_timeout)
            except grpc.aio.AioRpcError:
                latencies.append(float("inf"))
                return
            latencies.append(time.perf_counter() - scheduled)

        tasks = []
        for n in range(int(seconds * SMALL_RATE)):
            scheduled = start + n / SMALL_RATE
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        return latencies

    heavy_results: dict[str, list[tuple[float, str]]] = {what: [] for what, _ in heavy}
    async with (
        grpc.aio.insecure_channel(ranking) as small_channel,
        grpc.aio.insecure_channel(ranking, options=[("grpc.use_local_subchannel_pool", 1)]) as big,
        grpc.aio.insecure_channel(embedding) as similar_channel,
    ):
        small = ranking_pb2_grpc.RankingServiceStub(small_channel)
        alone = await small_calls(small)
        stop = asyncio.Event()

        async def heavy_loop(what: str, request: Any) -> None:
            if isinstance(request, embedding_pb2.SimilarItemsRequest):
                call = embedding_pb2_grpc.EmbeddingServiceStub(similar_channel).SimilarItems
            else:
                call = ranking_pb2_grpc.RankingServiceStub(big).Recommend
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    await call(request, timeout=call_timeout)
                    code = "OK"
                except grpc.aio.AioRpcError as error:
                    code = error.code().name
                heavy_results[what].append((time.perf_counter() - started, code))

        loops = [asyncio.create_task(heavy_loop(what, r)) for what, r in heavy]
        beside = await small_calls(small)
        stop.set()
        await asyncio.gather(*loops)

    def summary(latencies: list[float]) -> dict[str, float]:
        done = [x for x in latencies if x != float("inf")]
        return {
            "p50_ms": statistics.median(done) * 1000 if done else float("nan"),
            "p99_ms": percentile(done, 0.99) * 1000 if done else float("nan"),
            "failed": len(latencies) - len(done),
            "sent": len(latencies),
        }

    return {
        "small_alone": summary(alone),
        "small_beside_heavy": summary(beside),
        "heavy": {
            what: {
                "calls": len(results),
                "p50_ms": statistics.median(t for t, _ in results) * 1000 if results else None,
                "max_ms": max(t for t, _ in results) * 1000 if results else None,
                "codes": dict(pd.Series([c for _, c in results]).value_counts()),
            }
            for what, results in heavy_results.items()
        },
    }


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--events-per-user", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--loss", choices=["sampled", "full"], default="sampled")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--call-timeout", type=float, default=10.0, help="seconds per call")
    parser.add_argument("--start-deadline", type=float, default=900.0, help="seconds per service")
    parser.add_argument("--work", type=Path, help="keep (and reuse) the prepared dataset here")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument(
        "--recall-only",
        action="store_true",
        help="train, then measure the index's recall on the trained table; no export, no services",
    )
    parser.add_argument(
        "--vectors",
        type=Path,
        help="also save the item table and users' vectors here (.npz) for bench_vector_index.py",
    )
    return parser.parse_args(argv)


def index_rows(f: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's rows of training and of the index."""
    return [
        ("items; users; events", f"{f['items']:,}; {f['users']:,}; {f['events']:,}"),
        ("training, seconds per epoch: wall; CPU (all threads)",
         f"{f['epoch_s']:.1f} s; {f['epoch_cpu_s']:.1f} s ({f['loss']} softmax, "
         f"{f['train_pairs']:,} sequences)"),
        ("index the services use", f["service_index"]),
        ("approximate index", f["approximate"]),
        ("approximate index build (one thread)", f"{f['index_build_s']:.1f} s"),
        ("recall@10; recall@200 of the approximate index vs exact", f"{f['recall_at_10']:.3f}; "
         f"{f['recall_at_200']:.3f}"),
        ("search ms, k=10: exact; approximate", f"{f['exact_search_ms_k10']:.2f}; "
         f"{f['approximate_search_ms_k10']:.2f}"),
        ("search ms, k=200: exact; approximate", f"{f['exact_search_ms_k200']:.2f}; "
         f"{f['approximate_search_ms_k200']:.2f}"),
        ("SimilarItems (unit text vectors): recall@10; recall@200",
         f"{f['text_recall_at_10']:.3f}; {f['text_recall_at_200']:.3f}"),
        ("SimilarItems search ms, k=10: exact; approximate",
         f"{f['text_exact_search_ms_k10']:.2f}; {f['text_approximate_search_ms_k10']:.2f}"),
    ]  # fmt: skip


def print_rows(rows: list[tuple[str, str]]) -> None:
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def report(figures: dict[str, Any]) -> None:
    f = figures
    rows = [
        *index_rows(f),
        ("export: seconds; size", f"{f['export_s']:.1f} s; {f['export_mib']:,.0f} MiB"),
        ("start-up s: " + ", ".join(SERVICES),
         ", ".join(f"{f['start_s'][n]:.1f}" for n in SERVICES)),
        ("memory MiB, resident (peak): " + ", ".join(SERVICES),
         ", ".join(f"{f['rss_mib'][n]:,.0f} ({f['peak_mib'][n]:,.0f})" for n in SERVICES)),
    ]  # fmt: skip
    s, o = f["saturated"], f["offered"]
    rows.append((
        f"Recommend at saturation ({f['workers']} callers)",
        f"{s['per_s']:,.0f}/s, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms "
        f"({s['failed']} failed, {s['degraded']} degraded of {s['sent']})",
    ))  # fmt: skip
    rows.append((
        f"Recommend at {f['rate']:.0f}/s offered",
        f"p50 {o['p50_ms']:.1f} ms, p99 {o['p99_ms']:.1f} ms ({o['failed']} failed, "
        f"{o['degraded']} degraded of {o['sent']})",
    ))  # fmt: skip
    limits = f["limits"]
    for key, label in (("small_alone", "alone"), ("small_beside_heavy", "beside heavy calls")):
        x = limits[key]
        rows.append((
            f"small Recommend at {SMALL_RATE:.0f}/s, {label}",
            f"p50 {x['p50_ms']:.1f} ms, p99 {x['p99_ms']:.1f} ms ({x['failed']} failed of "
            f"{x['sent']})",
        ))  # fmt: skip
    for what, x in limits["heavy"].items():
        codes = ", ".join(f"{c} {n}" for c, n in x["codes"].items())
        p50 = "-" if x["p50_ms"] is None else f"{x['p50_ms']:,.0f}"
        top = "-" if x["max_ms"] is None else f"{x['max_ms']:,.0f}"
        rows.append((what, f"{x['calls']} calls, p50 {p50} ms, max {top} ms ({codes})"))
    print_rows(rows)


def main(argv: list[str] | None = None) -> None:
    args = options(argv)
    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        layout, prepare_s = dataset(work, args)
        if args.prepare_only:
            print(f"prepared {layout.root} in {prepare_s:.0f} s")
            return
        events = pd.read_parquet(layout.events, columns=["user_id"])["user_id"]
        catalog = len(pd.read_parquet(layout.items, columns=["item_id"]))
        users = sorted(events.unique())
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores; {catalog:,} items, "
            f"{len(users):,} users, {len(events):,} events",
            flush=True,
        )
        # The index settings the services will read (EVOREC_INDEX__... from the environment).
        settings = Settings().index
        figures: dict[str, Any] = {
            "items": catalog, "users": len(users), "events": len(events),
            "loss": args.loss, "epochs": args.epochs, "workers": args.workers,
            "rate": args.rate, "prepare_s": prepare_s, "index_settings": settings.model_dump(),
            "service_index": "exact" if catalog < settings.exact_below else "approximate",
        }  # fmt: skip
        if args.recall_only:
            trainer, trained = train(layout, args)
            figures.update(trained)
            vectors = trained_vectors(trainer, layout)
            if args.vectors:
                save_vectors(args.vectors, *vectors)
            figures.update(index_recall(*vectors, settings))
            figures.update(text_recall(layout, settings))
            print_rows(index_rows(figures))
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
            return
        base = work / "models" if args.work else Path(tempfile.mkdtemp(dir=work))
        service_data = Path(tempfile.mkdtemp(dir=work, prefix="service-data-"))
        try:
            trained = exported(layout, base, args)
            version_dir = Path(trained.pop("version_dir"))
            figures.update(trained)
            vectors = exported_vectors(version_dir, layout)
            if args.vectors:
                save_vectors(args.vectors, *vectors)
            figures.update(index_recall(*vectors, settings))
            figures.update(text_recall(layout, settings))
            env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
            env.update(
                EVOREC_DATA_DIR=str(service_data),
                EVOREC_DATASET=str(layout.root),
                EVOREC_SERVING__BASE_PATH=str(base),
                EVOREC_LOG_LEVEL="WARNING",
                **{
                    f"EVOREC_INDEX__{name.upper()}": str(value)
                    for name, value in settings.model_dump().items()
                },
            )
            services = Services(env)
            try:
                for name in SERVICES:
                    services.start(name, args.start_deadline)
                figures["start_s"] = services.start_s
                asyncio.run(ingest(services.target("interest"), layout))
                ranking = services.target("ranking")
                load = (ranking, users)
                asyncio.run(saturate(*load, 3, args.workers, args.call_timeout))  # warm up
                figures["saturated"] = asyncio.run(
                    saturate(*load, args.seconds, args.workers, args.call_timeout)
                )
                figures["offered"] = asyncio.run(
                    offered(*load, args.seconds, args.rate, args.call_timeout)
                )
                figures["limits"] = asyncio.run(
                    under_limits(
                        ranking,
                        services.target("embedding"),
                        users,
                        heavy_requests(layout, random.Random(0)),
                        args.seconds,
                        args.call_timeout,
                    )
                )
                memory = {n: memory_mib(p.pid) for n, p in services.processes.items()}
                figures["rss_mib"] = {n: m[0] for n, m in memory.items()}
                figures["peak_mib"] = {n: m[1] for n, m in memory.items()}
            finally:
                services.stop_all()
        finally:
            shutil.rmtree(service_data, ignore_errors=True)
            if not args.work:
                shutil.rmtree(base, ignore_errors=True)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
