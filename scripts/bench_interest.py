"""Benchmarks of the interest service: ingest rate through IngestEvents and StreamEvents,
GetInterestProfile latency for a user with 1,000 events, database size per million events.

    .venv/bin/python scripts/bench_interest.py [--events 1000000] [--items 10000 --users 2000]

Starts the preprocess, embedding and interest services as `evorec serve` processes over a
simulated catalog of 10,000 items (--items; --users simulated users prepare it; the test
suite's smoke run uses small numbers) (so that every event's topic is resolved, as in
production), with the durability setting `full` (each commit fsynced). The load comes from
this process over loopback; request messages are built before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from evorec.data.synth import SimulatorConfig
from evorec.platform.probes import free_port, wait_until_serving
from evorec.preparation import prepare_synthetic
from evorec.v1 import common_pb2, interest_pb2, interest_pb2_grpc

BATCH = 1_000
IN_FLIGHT = 4
STREAMS = 4


def batches(prefix: str, count: int, users: int, items: int) -> list[list[common_pb2.Event]]:
    events = [
        common_pb2.Event(
            event_id=f"{prefix}{n}",
            user_id=f"user{n % users}",
            item_id=f"i{(n * 7919) % items}",
            type=common_pb2.EVENT_TYPE_VIEW,
            event_time=Timestamp(seconds=1_600_000_000 + n // users),
        )
        for n in range(count)
    ]
    return [events[i : i + BATCH] for i in range(0, count, BATCH)]


async def ingest_batches(stub: object, work: list[list[common_pb2.Event]]) -> float:
    queue = list(reversed(work))

    async def worker() -> None:
        while queue:
            events = queue.pop()
            response = await stub.IngestEvents(interest_pb2.IngestEventsRequest(events=events))  # type: ignore[attr-defined]
            assert response.summary.accepted_count == len(events)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return sum(len(b) for b in work) / (time.perf_counter() - started)


async def ingest_stream(stub: object, work: list[list[common_pb2.Event]], streams: int) -> float:
    """`streams` concurrent StreamEvents calls (one per producer), messages split among them."""
    requests = [interest_pb2.StreamEventsRequest(events=b) for b in work]
    shares = [requests[i::streams] for i in range(streams)]

    async def one(share: list[interest_pb2.StreamEventsRequest]) -> int:
        response = await stub.StreamEvents(iter(share))  # type: ignore[attr-defined]
        return int(response.summary.accepted_count)

    started = time.perf_counter()
    accepted = await asyncio.gather(*(one(share) for share in shares))
    elapsed = time.perf_counter() - started
    assert sum(accepted) == sum(len(b) for b in work)
    return sum(len(b) for b in work) / elapsed


async def measure(port: int, total: int, items: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = interest_pb2_grpc.InterestServiceStub(channel)
        half = total // 2
        batch_rate = await ingest_batches(stub, batches("b", half, 10_000, items))
        third = (total - half) // 2
        stream_rate = await ingest_stream(stub, batches("s", third, 10_000, items), 1)
        streams_rate = await ingest_stream(
            stub, batches("p", total - half - third, 10_000, items), STREAMS
        )
        heavy = [
            common_pb2.Event(
                event_id=f"h{n}", user_id="heavy", item_id=f"i{n % items}",
                type=common_pb2.EVENT_TYPE_VIEW,
                event_time=Timestamp(seconds=1_600_000_000 + 600 * n),
            )
            for n in range(1_000)
        ]  # fmt: skip
        await stub.IngestEvents(interest_pb2.IngestEventsRequest(events=heavy))
        request = interest_pb2.GetInterestProfileRequest(user_id="heavy")
        await stub.GetInterestProfile(request)
        latencies = []
        for _ in range(500):
            start = time.perf_counter()
            await stub.GetInterestProfile(request)
            latencies.append(time.perf_counter() - start)
    latencies.sort()
    return {
        "batch_events_per_s": batch_rate,
        "stream_events_per_s": stream_rate,
        "streams_events_per_s": streams_rate,
        "profile_p50_ms": statistics.median(latencies) * 1000,
        "profile_p99_ms": latencies[int(0.99 * len(latencies))] * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=10_000, help="items of the catalog")
    parser.add_argument("--users", type=int, default=2_000, help="users that prepare it")
    args = parser.parse_args(argv)
    items = args.items
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare_synthetic(
            work / "dataset",
            work / "raw",
            SimulatorConfig(users=args.users, items=items, topics=20),
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
        env.update(
            EVOREC_DATA_DIR=str(work / "data"),
            EVOREC_DATASET=str(work / "dataset"),
            EVOREC_LOG_LEVEL="WARNING",
            EVOREC_INTEREST_STATE__DURABILITY="full",
        )
        processes = []
        try:
            for name in ("preprocess", "embedding", "interest"):
                env[f"EVOREC_{name.upper()}__PORT"] = str(free_port())
                env[f"EVOREC_{name.upper()}__METRICS_PORT"] = "0"
                process = subprocess.Popen([sys.executable, "-m", "evorec", "serve", name], env=env)
                processes.append(process)
                wait_until_serving(
                    f"127.0.0.1:{env[f'EVOREC_{name.upper()}__PORT']}", process=process
                )
            figures = asyncio.run(measure(int(env["EVOREC_INTEREST__PORT"]), args.events, items))
        finally:
            for process in processes:
                process.terminate()
                process.wait()
        database = work / "data" / "interest" / "events.sqlite"
        size = sum(p.stat().st_size for p in database.parent.glob("events.sqlite*"))
    stored = args.events + 1_000
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; durability full; {stored:,} events"
    )
    rows = [
        (f"IngestEvents, batches of {BATCH:,}, {IN_FLIGHT} in flight", "batch_events_per_s"),
        (f"StreamEvents, one stream, messages of {BATCH:,}", "stream_events_per_s"),
        (f"StreamEvents, {STREAMS} streams at once, messages of {BATCH:,}", "streams_events_per_s"),
    ]
    print("| measure | value |\n|---|---|")
    for label, key in rows:
        print(f"| {label} | {figures[key]:,.0f} events/s |")
    p50, p99 = figures["profile_p50_ms"], figures["profile_p99_ms"]
    print(f"| GetInterestProfile, user with 1,000 events: p50 / p99 | {p50:.2f} / {p99:.2f} ms |")
    print(f"| database size per million events | {size / stored * 1e6 / 2**20:,.0f} MiB |")


if __name__ == "__main__":
    main()
