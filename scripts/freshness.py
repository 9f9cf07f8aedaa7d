"""Freshness: how much retraining from live events helps, and what it costs.

    .venv/bin/python scripts/freshness.py [--chunks 4] [--epochs 20] [--dim 32] [--seed 0]
        [--plot PNG]

The drift simulator's data (its defaults: 200 users whose interests move, 400 items), in
time order. 5 % of the items are held back as new: their events in the first 70 % are
dropped, so they first appear later. A model (a one-block Transformer with text, max_len 50,
`--dim`, at most `--epochs` epochs, patience 5, 10 warm-up steps) is trained on the first
70 % of the events (version 1); the services are started in this process on that dataset
and fed its events; the remaining events are cut into
`--chunks` chunks of equal event counts. For each chunk: the items first seen in it are
upserted (`EmbeddingService.UpsertItems`), every model so far is scored on it (each user's
first event in the chunk, given all their events before it; every catalog item ranked, seen
ones excluded; items a model never held are scored through its text projection), then the
chunk is replayed (`evorec replay`'s code, `StreamEvents`) and two retrains run
(`evorec retrain`'s code, margin 1 so each is published): warm-started from the previous
warm version, and from scratch. Printed: NDCG@10 on each chunk of the never-retrained
model, the warm and the from-scratch lineage; each retrain's seconds; and, of the items
first seen in a chunk, how many the next warm version holds with an id embedding (served
through the encoder, not only through its text).

    .venv/bin/python scripts/freshness.py --source ml-100k [--data ../shared/datasets/ml-100k]
        [--dim 64 --blocks 2 --max-len 200] [--chunks 3] [--epochs 15] [--seed 0] [--plot PNG]

`--source ml-100k` reads the real ml-100k with the project's reader and prepares it as
`evorec data prepare` does (its default options), then makes a global time split: version 1
is trained on every event before the timestamp that leaves 70 % of the events before it;
the rest is cut into `--chunks` chunks of equal event counts as above. Nothing is held back:
the items first rated after the cut are new by themselves, and users first seen after it
have no history and are not scored. `--seed` is the training seed there (the data is
fixed); the architecture defaults to the one reported for ml-100k in BENCHMARKS.md "Models"
(d=64, 2 blocks, max length 200); the other settings are those above.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evorec.data.artifacts import DatasetLayout
from evorec.data.readers import read_dataset
from evorec.data.schema import EVENT_COLUMNS, RawDataset
from evorec.data.synth import SimulatorConfig, simulate
from evorec.encoder.bundle import ModelBundle, model_versions
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.evaluation.metrics import RankingMetrics, mask_seen, positions
from evorec.learning.comparison import version_scores
from evorec.learning.replay import ReplayEvents, replay
from evorec.learning.retrain import RetrainRequest, retrain
from evorec.model_cli import train_and_export
from evorec.platform.clients import embedding_client, interest_client
from evorec.platform.config import Settings, load_settings
from evorec.platform.probes import free_port
from evorec.platform.registry import create_service
from evorec.platform.server import RunningServer, start_server
from evorec.preparation import PrepareOptions, prepare
from evorec.v1 import embedding_pb2

INITIAL_SHARE = 0.7
NEW_SHARE = 0.05
# Each source's defaults: the simulator's as before; ml-100k's architecture is the one reported
# in BENCHMARKS.md "Models", with fewer chunks and epochs so that a seed fits in about an hour.
SOURCE_DEFAULTS: dict[str, dict[str, int]] = {
    "simulator": {"chunks": 4, "epochs": 20, "dim": 32, "blocks": 1, "max_len": 50},
    "ml-100k": {"chunks": 3, "epochs": 15, "dim": 64, "blocks": 2, "max_len": 200},
}


def configure(root: Path, dataset: Path) -> None:
    os.environ["EVOREC_DATA_DIR"] = str(root / "data")
    os.environ["EVOREC_DATASET"] = str(dataset)
    os.environ["EVOREC_LOG_LEVEL"] = "WARNING"
    os.environ["EVOREC_RETRAIN__NDCG_MARGIN"] = "1"
    for name in ("preprocess", "embedding", "interest", "ranking"):
        os.environ[f"EVOREC_{name.upper()}__PORT"] = str(free_port())
        os.environ[f"EVOREC_{name.upper()}__METRICS_PORT"] = str(free_port())


def with_base(settings: Settings, base: Path) -> Settings:
    return settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"base_path": base})}
    )


async def catalog(settings: Settings) -> tuple[list[str], np.ndarray]:
    """Every catalog item (index 0: padding) and its text vector, in the serving text space."""
    entries = []
    revision, catalog_id = 0, ""
    async with embedding_client(settings) as embedding:
        while True:
            page = await embedding.stub.ListItems(
                embedding_pb2.ListItemsRequest(after_revision=revision, catalog_id=catalog_id)
            )
            entries += list(page.items)
            revision, catalog_id = page.revision, page.catalog_id
            if not page.has_more:
                break
    latest = {e.item.item_id: e.vector.vector.values for e in entries}
    ids = ["", *latest]
    table = np.zeros((len(ids), page.dimension), np.float32)
    for row, values in enumerate(latest.values(), 1):
        if len(values) == page.dimension:
            table[row] = values
    return ids, table


def ndcg_on_chunk(
    version_dir: Path, ids: list[str], text: np.ndarray, before: pd.DataFrame, chunk: pd.DataFrame
) -> float:
    index = {item_id: i for i, item_id in enumerate(ids) if i}
    firsts = chunk.sort_values("timestamp", kind="stable").groupby("user_id").head(1)
    histories, targets = [], []
    grouped = {u: g["item_id"].tolist() for u, g in before.groupby("user_id")}
    for user, item in zip(firsts["user_id"], firsts["item_id"], strict=True):
        if user in grouped and item in index:
            histories.append(np.array([index[i] for i in grouped[user]], np.int64))
            targets.append(index[item])
    scores = mask_seen(version_scores(version_dir, ids, text, histories), histories)
    return RankingMetrics.from_positions(positions(scores, np.array(targets))).values["ndcg@10"]


async def start_services(settings: Settings) -> list[RunningServer]:
    running = []
    for name in ("preprocess", "embedding", "interest"):
        server = await start_server(
            create_service(name, settings), settings.endpoint(name), settings.server
        )
        await server.ready()
        running.append(server)
    return running


async def feed(settings: Settings, frame: pd.DataFrame, key: str) -> None:
    events = frame.copy()
    events["event_id"] = [f"{key}-{i}" for i in events["row"]]
    async with interest_client(settings) as interest:
        await replay(interest.stub, ReplayEvents(key, events.reset_index(drop=True)))


async def upsert(settings: Settings, items: pd.DataFrame) -> None:
    async with embedding_client(settings) as embedding:
        for start in range(0, len(items), 500):
            part = items.iloc[start : start + 500]
            await embedding.stub.UpsertItems(
                embedding_pb2.UpsertItemsRequest(
                    items=[
                        embedding_pb2.Item(
                            item_id=r.item_id, title=r.title, text=r.text,
                            categories=list(r.categories),
                        )
                        for r in part.itertuples()
                    ]
                )
            )  # fmt: skip


def split_simulator(
    root: Path, seed: int
) -> tuple[RawDataset, PrepareOptions, pd.DataFrame, pd.DataFrame]:
    """The drift simulator's data, with 5 % of its items held back as new: (the raw dataset,
    its preparation options, the initial events, the rest), events cleaned and in time order."""
    config = SimulatorConfig(seed=seed)
    simulate(config).write(root / "raw", config)
    raw = read_dataset(root / "raw")
    options = PrepareOptions(topics=config.topics)
    events = prepared_events(raw, root / "whole", options)
    cut = int(len(events) * INITIAL_SHARE)
    held_back = set(
        pd.Series(sorted(events["item_id"].unique())).sample(frac=NEW_SHARE, random_state=0)
    )
    initial, rest = events.iloc[:cut], events.iloc[cut:]
    return raw, options, initial[~initial["item_id"].isin(held_back)], rest


def split_by_time(
    path: Path, root: Path
) -> tuple[RawDataset, PrepareOptions, pd.DataFrame, pd.DataFrame]:
    """A real dataset (read as `evorec data prepare` reads it, prepared with its defaults)
    split globally at the timestamp that leaves INITIAL_SHARE of the events before it; every
    event at or after it is later. Items first seen later are new by themselves."""
    raw = read_dataset(path)
    options = PrepareOptions()
    events = prepared_events(raw, root / "whole", options)
    cut_time = events["timestamp"].iloc[int(len(events) * INITIAL_SHARE)]
    later = (events["timestamp"] >= cut_time).to_numpy()
    return raw, options, events[~later], events[later]


def prepared_events(raw: RawDataset, out: Path, options: PrepareOptions) -> pd.DataFrame:
    """The whole event log, cleaned and in time order, as preparation leaves it."""
    prepare(raw, out, options)
    events = pd.read_parquet(DatasetLayout(out).events)
    events["row"] = np.arange(len(events))
    return events


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="evorec-freshness-"))
    if args.source == "simulator":
        raw, options, initial, rest = split_simulator(root, args.seed)
        training = TrainingConfig(epochs=args.epochs, patience=5, warmup_steps=10)
    else:
        raw, options, initial, rest = split_by_time(args.data, root)
        training = TrainingConfig(epochs=args.epochs, patience=5, warmup_steps=10, seed=args.seed)
    items = raw.items
    bounds = np.linspace(0, len(rest), args.chunks + 1).astype(int)
    chunks = [rest.iloc[a:b] for a, b in itertools.pairwise(bounds)]
    print(
        f"{args.source}: {len(initial):,} initial events, {len(rest):,} later in"
        f" {args.chunks} chunks",
        flush=True,
    )

    first = root / "initial"
    raw_first = RawDataset(
        "initial", "synthetic" if args.source == "simulator" else raw.source_format,
        initial[list(EVENT_COLUMNS)].copy(),
        items[items["item_id"].isin(initial["item_id"])].copy(), [],
    )  # fmt: skip
    prepare(raw_first, first, options)
    configure(root, first)
    settings = load_settings()
    encoder = EncoderConfig(dim=args.dim, max_len=args.max_len, blocks=args.blocks)
    warm_base, scratch_base = root / "warm", root / "scratch"
    v1 = train_and_export(DatasetLayout(first), encoder, training, warm_base, "encoder")
    shutil.copytree(warm_base, scratch_base)

    running = await start_services(settings)
    rows: list[dict[str, Any]] = []
    try:
        await feed(settings, initial, "initial")
        known = set(initial["item_id"])
        warm_dir, scratch_dir = v1, scratch_base / "encoder" / "1"
        for number, chunk in enumerate(chunks):
            new_items = items[items["item_id"].isin(set(chunk["item_id"]) - known)]
            await upsert(settings, new_items)
            ids, text = await catalog(settings)
            before = pd.concat([initial, *chunks[:number]])  # what the services were fed
            row: dict[str, Any] = {
                "chunk": number + 1,
                "events": len(chunk),
                "new_items": len(new_items),
                "never_retrained": ndcg_on_chunk(v1, ids, text, before, chunk),
                "warm": ndcg_on_chunk(warm_dir, ids, text, before, chunk),
                "scratch": ndcg_on_chunk(scratch_dir, ids, text, before, chunk),
            }
            started = time.perf_counter()
            await feed(settings, chunk, "chunk")
            row["replay_seconds"] = round(time.perf_counter() - started, 1)
            known |= set(chunk["item_id"])
            if number < len(chunks) - 1:
                request = RetrainRequest(encoder, training)
                for lineage, base in (("warm", warm_base), ("scratch", scratch_base)):
                    started = time.perf_counter()
                    report = await asyncio.to_thread(
                        retrain,
                        with_base(settings, base),
                        replace(request, from_scratch=lineage == "scratch"),
                    )
                    row[f"{lineage}_seconds"] = round(time.perf_counter() - started, 1)
                    version = base / "encoder" / str(model_versions(base / "encoder")[-1])
                    if lineage == "warm":
                        warm_dir = version
                        held = set(ModelBundle.load(version).item_ids)
                        row["new_items_in_encoder"] = int(new_items["item_id"].isin(held).sum())
                        row["warm_train_s"] = report["training"]["seconds"]
                    else:
                        scratch_dir = version
                        row["scratch_train_s"] = report["training"]["seconds"]
            rows.append(row)
            print(row, flush=True)
    finally:
        for server in reversed(running):
            await server.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    return rows


def report(rows: list[dict[str, Any]], plot: Path | None) -> None:
    print(
        "| chunk | events | new items | NDCG@10 never retrained | warm | from scratch |"
        " warm retrain s (training) | scratch retrain s (training) |"
        " new items in the encoder after | replay s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['chunk']} | {r['events']:,} | {r['new_items']} | {r['never_retrained']:.4f} |"
            f" {r['warm']:.4f} | {r['scratch']:.4f} |"
            f" {r.get('warm_seconds', '-')} ({r.get('warm_train_s', '-')}) |"
            f" {r.get('scratch_seconds', '-')} ({r.get('scratch_train_s', '-')}) |"
            f" {r.get('new_items_in_encoder', '-')} of {r['new_items']} | {r['replay_seconds']} |"
        )
    if plot is not None:
        from evorec.plotting import pyplot

        plt = pyplot()
        figure, axis = plt.subplots(figsize=(7, 4), constrained_layout=True)
        chunks = [r["chunk"] for r in rows]
        for key, label in (
            ("never_retrained", "never retrained"), ("warm", "warm-started retrains"),
            ("scratch", "from-scratch retrains"),
        ):  # fmt: skip
            axis.plot(chunks, [r[key] for r in rows], marker="o", label=label)
        axis.set_xlabel("chunk of later events (scored before it is replayed)")
        axis.set_ylabel("NDCG@10 on the chunk")
        axis.set_xticks(chunks)
        axis.legend()
        figure.savefig(plot, dpi=100)
        plt.close(figure)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", choices=("simulator", "ml-100k"), default="simulator")
    parser.add_argument(
        "--data", type=Path, default=Path("../shared/datasets/ml-100k"),
        help="The ml-100k folder (with --source ml-100k).",
    )  # fmt: skip
    parser.add_argument("--chunks", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--dim", type=int)
    parser.add_argument("--blocks", type=int)
    parser.add_argument("--max-len", type=int)
    parser.add_argument(
        "--seed", type=int, default=0,
        help="The simulator's seed; with --source ml-100k, the training seed.",
    )  # fmt: skip
    parser.add_argument("--plot", type=Path)
    arguments = parser.parse_args()
    for name, value in SOURCE_DEFAULTS[arguments.source].items():
        if getattr(arguments, name) is None:
            setattr(arguments, name, value)
    report(asyncio.run(main(arguments)), arguments.plot)
