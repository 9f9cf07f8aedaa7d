"""Proof: bad input. The whole hostile catalogue of tests/bad_input.py against the four
services running as `evorec serve` processes.

    nice -n 15 .venv/bin/python scripts/bad_input.py [--concurrency 4] [--timeout 30]

A small simulated dataset is prepared (80 users, 160 items, 4 topics: the test suite's) and a
small transformer trained on it and exported; the four services start as real processes on
free loopback ports, the dataset's events are ingested, and the catalogue (every RPC of the
four services, streams included) is sent as raw bytes. It prints the count of answers per
status code per RPC, then checks what must hold afterwards:

- no answer is UNKNOWN or INTERNAL (each one found is printed with its case);
- every service process is alive and its health reports SERVING, and a plain Recommend is
  still answered by the model;
- stored data is intact: the dataset's events (every field) and items (vectors, topics) are
  unchanged, and the events of the users the catalogue writes number exactly what the
  accepted ingests minus the deletions say (the client-cut streams' user: between none and
  what was sent, since a cut stream keeps what was acknowledged).

Exits non-zero when any of them fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import grpc
import pandas as pd
from google.protobuf.message import Message

from evorec.data.artifacts import DatasetLayout
from evorec.data.synth import SimulatorConfig
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.model_cli import train_and_export
from evorec.platform.probes import check_health, free_port, wait_until_serving
from evorec.preparation import prepare_synthetic
from evorec.v1 import (
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    interest_pb2,
    interest_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.bad_input import (
    CATALOGUE_USER,
    CUT_STREAM_USER,
    Case,
    Outcome,
    catalogue,
    cut_seeds,
    failures,
    rpcs,
    seeds,
    send_all,
    tally,
)

NAMES = ("preprocess", "embedding", "interest", "ranking")
SERVICE_OF = {f"evorec.v1.{name.capitalize()}Service": name for name in NAMES}
SMALL = SimulatorConfig(users=80, items=160, topics=4, events_per_user=30, seed=11)
EventRecord = tuple[str, str, str, int, float, str, float]


class Services:
    """The four services as `evorec serve` processes on free ports."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = dict(env)
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        self.env[f"EVOREC_{name.upper()}__PORT"] = str(free_port())
        self.env[f"EVOREC_{name.upper()}__METRICS_PORT"] = "0"
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "evorec", "serve", name], env=self.env, stderr=log
            )
        self.processes[name] = process
        wait_until_serving(self.target(name), process=process, timeout=300)

    def target(self, name: str) -> str:
        return f"127.0.0.1:{self.env[f'EVOREC_{name.upper()}__PORT']}"

    def stop_all(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def ingest_dataset(target: str, layout: DatasetLayout) -> int:
    events = pd.read_parquet(layout.events, columns=["user_id", "item_id", "timestamp"])
    messages = [
        common_pb2.Event(
            event_id=f"e{n}", user_id=user, item_id=item, type=common_pb2.EVENT_TYPE_VIEW,
            event_time={"seconds": int(when)},
        )
        for n, (user, item, when) in enumerate(events.itertuples(index=False))
    ]  # fmt: skip
    async with grpc.aio.insecure_channel(target) as channel:
        stub = interest_pb2_grpc.InterestServiceStub(channel)
        for start in range(0, len(messages), 1_000):
            batch = messages[start : start + 1_000]
            await stub.IngestEvents(interest_pb2.IngestEventsRequest(events=batch), timeout=60)
    return len(messages)


async def exported(target: str) -> dict[str, EventRecord]:
    """Every stored event by id, through ExportEvents."""
    records: dict[str, EventRecord] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = interest_pb2_grpc.InterestServiceStub(channel)
        request = interest_pb2.ExportEventsRequest(page_size=10_000)
        async for page in stub.ExportEvents(request, timeout=120):
            for stored in page.events:
                e = stored.event
                records[e.event_id] = (
                    e.user_id, e.item_id, e.text, int(e.type), e.value,
                    str(stored.unknown_item), e.event_time.ToNanoseconds() / 1e9,
                )  # fmt: skip
    return records


async def item_vectors(target: str, items: Sequence[str]) -> dict[str, tuple[int, str, bytes]]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        response = await stub.GetItemVectors(
            embedding_pb2.GetItemVectorsRequest(item_ids=list(items)), timeout=60
        )
    return {
        v.item_id: (int(v.status), v.topic_id, v.vector.SerializeToString()) for v in response.items
    }


async def plain_recommend(target: str, user: str) -> ranking_pb2.RecommendResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        response: ranking_pb2.RecommendResponse = await stub.Recommend(
            ranking_pb2.RecommendRequest(user_id=user, k=10), timeout=30
        )
        return response


def net_writes(outcomes: Sequence[Outcome]) -> tuple[int, int, int]:
    """(accepted, deleted) events by the answered calls, and the events sent in cut streams."""
    accepted = deleted = cut_sent = 0
    for outcome in outcomes:
        name = outcome.case.rpc.name
        if name == "StreamEvents" and outcome.case.cancel_after is not None:
            for raw in outcome.case.messages[: outcome.case.cancel_after]:
                cut_sent += len(interest_pb2.StreamEventsRequest.FromString(raw).events)
        if outcome.code != grpc.StatusCode.OK or not outcome.responses:
            continue
        if name == "IngestEvents":
            response = interest_pb2.IngestEventsResponse.FromString(outcome.responses[0])
            accepted += response.summary.accepted_count
        elif name == "StreamEvents":
            summary = interest_pb2.StreamEventsResponse.FromString(outcome.responses[0]).summary
            accepted += summary.accepted_count
        elif name == "DeleteUser":
            reply = interest_pb2.DeleteUserResponse.FromString(outcome.responses[0])
            deleted += reply.deleted_event_count
    return accepted, deleted, cut_sent


async def check_seeds(services: Services, all_seeds: dict[str, Message]) -> list[str]:
    """Each RPC's seed must be answered OK, or its field cases would all stop at the seed's
    own fault rather than at the field they change."""
    problems = []
    for rpc in rpcs():
        name = SERVICE_OF[rpc.service]
        seed = all_seeds[rpc.name].SerializeToString()
        case = Case(rpc, "seed", "the valid seed", (seed,))
        outcome = (await send_all(services.target(name), [case]))[0]
        if outcome.code != grpc.StatusCode.OK:
            problems.append(
                f"the seed of {rpc.name} was answered {outcome.code.name}: {outcome.details}"
            )
    return problems


def print_counts(outcomes: Sequence[Outcome]) -> None:
    counts = tally(outcomes)
    codes = sorted({code for per_rpc in counts.values() for code in per_rpc})
    print("| RPC | requests | " + " | ".join(codes) + " |")
    print("|---|---:|" + "---:|" * len(codes))
    total: Counter[str] = Counter()
    for rpc, per_rpc in counts.items():
        total.update(per_rpc)
        cells = " | ".join(str(per_rpc.get(code, 0)) for code in codes)
        print(f"| `{rpc}` | {sum(per_rpc.values()):,} | {cells} |")
    cells = " | ".join(f"{total.get(code, 0):,}" for code in codes)
    print(f"| all | {sum(total.values()):,} | {cells} |")
    kinds = Counter(outcome.case.kind for outcome in outcomes)
    print("cases per kind: " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(kinds.items())))


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4, help="calls in flight per service")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    parser.add_argument(
        "--logs", type=Path, help="where the services' logs go (default: a temporary folder)"
    )
    return parser.parse_args(argv)


async def run_catalogue(
    services: Services, cases_by_service: dict[str, list[Case]], args: argparse.Namespace
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for name, cases in cases_by_service.items():
        started = time.perf_counter()
        answered = await send_all(services.target(name), cases, args.timeout, args.concurrency)
        print(f"{name}: {len(answered):,} requests in {time.perf_counter() - started:.0f} s")
        outcomes.extend(answered)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare_synthetic(work / "dataset", work / "raw", SMALL)
        layout = DatasetLayout(work / "dataset")
        train_and_export(
            layout,
            EncoderConfig(dim=32, max_len=50, blocks=1),
            TrainingConfig(epochs=2, batch_size=32),
            work / "models",
            "encoder",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
        env.update(
            EVOREC_DATA_DIR=str(work / "data"),
            EVOREC_DATASET=str(work / "dataset"),
            EVOREC_SERVING__BASE_PATH=str(work / "models"),
            EVOREC_LOG_LEVEL="WARNING",
        )
        logs = args.logs or work
        logs.mkdir(parents=True, exist_ok=True)
        services = Services(env, logs)
        try:
            for name in NAMES:
                services.start(name)
            dataset_events = asyncio.run(ingest_dataset(services.target("interest"), layout))
            known_items = sorted(pd.read_parquet(layout.items)["item_id"].astype(str))
            dataset_users = set(pd.read_parquet(layout.events)["user_id"].astype(str))
            now = time.time()
            all_seeds: dict[str, Message] = seeds(known_items, now)
            problems.extend(asyncio.run(check_seeds(services, all_seeds)))
            before = asyncio.run(exported(services.target("interest")))
            vectors_before = asyncio.run(item_vectors(services.target("embedding"), known_items))
            cases = catalogue(all_seeds, cut_seeds(known_items, now))
            by_service: dict[str, list[Case]] = {name: [] for name in NAMES}
            for case in cases:
                by_service[SERVICE_OF[case.rpc.service]].append(case)
            print(
                f"{dataset_events:,} dataset events ingested; {len(cases):,} cases over "
                f"{len({c.rpc.path for c in cases})} RPCs"
            )
            outcomes = asyncio.run(run_catalogue(services, by_service, args))
            print_counts(outcomes)
            forbidden = sorted(failures(outcomes), key=lambda o: o.code != grpc.StatusCode.INTERNAL)
            for outcome in forbidden[:50]:
                problems.append(
                    f"{outcome.code.name} from {outcome.case.rpc.name} "
                    f"[{outcome.case.kind}] {outcome.case.label}: {outcome.details[:200]}"
                )
            if len(forbidden) > 50:
                problems.append(f"... and {len(forbidden) - 50} more UNKNOWN/INTERNAL answers")
            for name, process in services.processes.items():
                if process.poll() is not None:
                    problems.append(f"{name} exited with status {process.returncode}")
                elif (health := check_health(services.target(name), timeout=10)) != "SERVING":
                    problems.append(f"{name} reports {health}")
            after = asyncio.run(exported(services.target("interest")))
            vectors_after = asyncio.run(item_vectors(services.target("embedding"), known_items))
            user = sorted(dataset_users)[0]
            answer = asyncio.run(plain_recommend(services.target("ranking"), user))
            if not answer.model_version or answer.degraded_sources:
                problems.append(f"a plain Recommend afterwards was degraded: {answer}")
        finally:
            services.stop_all()
        stored = integrity(before, after, dataset_users, outcomes)
        if vectors_after != vectors_before:
            changed = [i for i in vectors_before if vectors_after.get(i) != vectors_before[i]]
            stored.append(f"dataset items changed: {changed[:10]}")
        problems.extend(stored)
        crashes = sum(1 for p in problems if "exited" in p)
        serving = not any("reports" in p or "exited" in p for p in problems)
        print(
            f"UNKNOWN: {sum(o.code == grpc.StatusCode.UNKNOWN for o in outcomes)}, "
            f"INTERNAL: {sum(o.code == grpc.StatusCode.INTERNAL for o in outcomes)}, "
            f"crashes: {crashes}, all four services SERVING afterwards: {serving}, "
            f"stored data intact: {not stored}"
        )
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


def integrity(
    before: dict[str, EventRecord],
    after: dict[str, EventRecord],
    dataset_users: set[str],
    outcomes: Sequence[Outcome],
) -> list[str]:
    """What the catalogue may not have changed in the interest store."""
    problems = []
    dataset_before = {k: v for k, v in before.items() if v[0] in dataset_users}
    dataset_after = {k: v for k, v in after.items() if v[0] in dataset_users}
    if dataset_after != dataset_before:
        lost = len(set(dataset_before) - set(dataset_after))
        changed = sum(
            1
            for k in dataset_before
            if k in dataset_after and dataset_after[k] != dataset_before[k]
        )
        added = len(set(dataset_after) - set(dataset_before))
        problems.append(f"dataset events changed: {lost} lost, {changed} changed, {added} added")
    accepted, deleted, cut_sent = net_writes(outcomes)
    written = [v for v in after.values() if v[0] not in dataset_users and v[0] != CUT_STREAM_USER]
    existed = [v for v in before.values() if v[0] not in dataset_users and v[0] != CUT_STREAM_USER]
    expected = len(existed) + accepted - deleted
    if len(written) != expected:
        problems.append(
            f"catalogue users' events: {len(written)} stored, {expected} expected "
            f"({len(existed)} before + {accepted} accepted - {deleted} deleted)"
        )
    cut = sum(1 for v in after.values() if v[0] == CUT_STREAM_USER)
    if not 0 <= cut <= cut_sent:
        problems.append(f"cut streams stored {cut} events of the {cut_sent} sent")
    print(
        f"interest store: {len(dataset_after):,} dataset events unchanged "
        f"{dataset_after == dataset_before}; {CATALOGUE_USER} and other catalogue users: "
        f"{len(written)} events stored = {accepted} accepted - {deleted} deleted "
        f"+ {len(existed)} before; cut streams: {cut} of {cut_sent} sent kept"
    )
    return problems


if __name__ == "__main__":
    raise SystemExit(main())
