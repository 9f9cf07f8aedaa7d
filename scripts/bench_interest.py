"""Benchmarks of the interest service: ingest rate through IngestEvents and StreamEvents,
GetInterestProfile and GetRecentItems latency for a user with 1,000 events, database size per
million events.

    .venv/bin/python scripts/bench_interest.py [--events 1000000] [--start-events 0]
        [--items 10000 --users 2000] [--in-flight 4] [--history 1000] [--readers 1]
        [--event-ids counter|random|time-ordered] [--varied-items] [--json OUT]

--start-events N first fills the store with N events by `evorec.interest.bulk` (the same
database ingest would build, in minutes rather than hours), so that the RPCs are measured
on a store of that size; the measured events come after them in time, as new events do.
--in-flight sets the IngestEvents calls in flight, --history the events of the user whose
profile and recent items are read, --readers the read calls in flight at once (the sweep,
scripts/sweep.py, varies them). --event-ids and --varied-items shape the events as real
traffic may be (`bench_events.Shape`, shared with scripts/profile_ingest.py). --json writes
the figures as JSON too.

Starts the preprocess, embedding and interest services as `evorec serve` processes over a
simulated catalog of 10,000 items (--items; --users simulated users prepare it; the test
suite's smoke run uses small numbers) (so that every event's topic is resolved, as in
production), with the durability setting `full` (each commit fsynced). The load comes from
this process over loopback; request messages are built before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import grpc
from bench_events import START_TIME, Shape, event_fields, event_id
from google.protobuf.timestamp_pb2 import Timestamp

from evorec.data.synth import SimulatorConfig
from evorec.interest.bulk import BulkRow, bulk_load
from evorec.platform.probes import free_port, wait_until_serving
from evorec.preparation import prepare_synthetic
from evorec.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, interest_pb2, interest_pb2_grpc

BATCH = 1_000
IN_FLIGHT = 4
STREAMS = 4


def batches(
    prefix: str, first: int, count: int, items: int, shape: Shape
) -> list[list[common_pb2.Event]]:
    """Events number first .. first + count - 1 in messages of BATCH."""
    events = []
    for n in range(first, first + count):
        user, item, at = event_fields(n, items, shape)
        events.append(
            common_pb2.Event(
                event_id=event_id(n, shape, prefix), user_id=user, item_id=item,
                type=common_pb2.EVENT_TYPE_VIEW, event_time=Timestamp(seconds=at),
            )
        )  # fmt: skip
    return [events[i : i + BATCH] for i in range(0, count, BATCH)]


def prefill_rows(count: int, items: int, topics: dict[str, str], shape: Shape) -> Iterator[BulkRow]:
    """Events number 0 .. count - 1, as the bulk loader takes them."""
    for n in range(count):
        user, item, at = event_fields(n, items, shape)
        topic = topics.get(item)
        yield (event_id(n, shape, "f", 10), user, item, common_pb2.EVENT_TYPE_VIEW, None, "",
               float(at), float(at), 0, topic)  # fmt: skip


async def catalog_topics(port: int, items: int) -> dict[str, str]:
    """Each item's topic, asked of the EmbeddingService as the interest service would."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        response = await stub.GetItemVectors(
            embedding_pb2.GetItemVectorsRequest(item_ids=[f"i{i}" for i in range(items)])
        )
    return {item.item_id: item.topic_id for item in response.items if item.topic_id}


async def ingest_batches(stub: object, work: list[list[common_pb2.Event]], in_flight: int) -> float:
    queue = list(reversed(work))

    async def worker() -> None:
        while queue:
            events = queue.pop()
            response = await stub.IngestEvents(interest_pb2.IngestEventsRequest(events=events))  # type: ignore[attr-defined]
            assert response.summary.accepted_count == len(events)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
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


async def timed_calls(
    call: Callable[[], Awaitable[object]], total: int, callers: int
) -> list[float]:
    """Latencies of `total` calls, `callers` of them in flight at any time."""
    latencies: list[float] = []
    remaining = [total]

    async def caller() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(caller() for _ in range(callers)))
    return sorted(latencies)


async def measure(
    port: int,
    first: int,
    total: int,
    items: int,
    shape: Shape,
    in_flight: int,
    history: int,
    readers: int,
) -> dict[str, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = interest_pb2_grpc.InterestServiceStub(channel)
        half = total // 2
        third = (total - half) // 2
        # Each phase's events come after the ones before in time, as new events do.
        batch_rate = await ingest_batches(stub, batches("b", first, half, items, shape), in_flight)
        stream_rate = await ingest_stream(stub, batches("s", first + half, third, items, shape), 1)
        rest = total - half - third
        streams_rate = await ingest_stream(
            stub, batches("p", first + half + third, rest, items, shape), STREAMS
        )
        heavy = [
            common_pb2.Event(
                event_id=f"h{n}", user_id="heavy", item_id=f"i{n % items}",
                type=common_pb2.EVENT_TYPE_VIEW,
                event_time=Timestamp(seconds=START_TIME + 600 * n),
            )
            for n in range(history)
        ]  # fmt: skip
        for start in range(0, history, BATCH):
            await stub.IngestEvents(
                interest_pb2.IngestEventsRequest(events=heavy[start : start + BATCH])
            )
        profile = interest_pb2.GetInterestProfileRequest(user_id="heavy")
        recent = interest_pb2.GetRecentItemsRequest(user_id="heavy", limit=min(history, 1_000))
        await stub.GetInterestProfile(profile)
        profiles = await timed_calls(lambda: stub.GetInterestProfile(profile), 500, readers)
        recents = await timed_calls(lambda: stub.GetRecentItems(recent), 500, readers)
    return {
        "batch_events_per_s": batch_rate,
        "stream_events_per_s": stream_rate,
        "streams_events_per_s": streams_rate,
        "profile_p50_ms": statistics.median(profiles) * 1000,
        "profile_p99_ms": profiles[int(0.99 * len(profiles))] * 1000,
        "recent_p50_ms": statistics.median(recents) * 1000,
        "recent_p99_ms": recents[int(0.99 * len(recents))] * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=10_000, help="items of the catalog")
    parser.add_argument("--users", type=int, default=2_000, help="users that prepare it")
    parser.add_argument("--start-events", type=int, default=0, help="bulk-loaded first")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="IngestEvents calls")
    parser.add_argument("--history", type=int, default=1_000, help="events of the read user")
    parser.add_argument("--readers", type=int, default=1, help="read calls in flight")
    Shape.add_options(parser)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    items = args.items
    shape = Shape.of(args)
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
                if name == "interest" and args.start_events:
                    port = int(env["EVOREC_EMBEDDING__PORT"])
                    topics = asyncio.run(catalog_topics(port, items))
                    started = time.perf_counter()
                    bulk_load(
                        work / "data" / "interest" / "events.sqlite",
                        prefill_rows(args.start_events, items, topics, shape),
                    )
                    loaded_s = time.perf_counter() - started
                    print(f"bulk-loaded {args.start_events:,} events in {loaded_s:,.0f} s")
                process = subprocess.Popen([sys.executable, "-m", "evorec", "serve", name], env=env)
                processes.append(process)
                wait_until_serving(
                    f"127.0.0.1:{env[f'EVOREC_{name.upper()}__PORT']}", process=process
                )
            figures = asyncio.run(
                measure(
                    int(env["EVOREC_INTEREST__PORT"]), args.start_events, args.events, items,
                    shape, args.in_flight, args.history, args.readers,
                )
            )  # fmt: skip
        finally:
            for process in processes:
                process.terminate()
                process.wait()
        database = work / "data" / "interest" / "events.sqlite"
        size = sum(p.stat().st_size for p in database.parent.glob("events.sqlite*"))
    stored = args.start_events + args.events + args.history
    figures["database_mib"] = size / 2**20
    figures["stored_events"] = stored
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; durability full;"
        f" {args.start_events:,} events bulk-loaded first, {stored:,} stored at the end"
    )
    rows = [
        (f"IngestEvents, batches of {BATCH:,}, {args.in_flight} in flight", "batch_events_per_s"),
        (f"StreamEvents, one stream, messages of {BATCH:,}", "stream_events_per_s"),
        (f"StreamEvents, {STREAMS} streams at once, messages of {BATCH:,}", "streams_events_per_s"),
    ]
    print("| measure | value |\n|---|---|")
    for label, key in rows:
        print(f"| {label} | {figures[key]:,.0f} events/s |")
    who = f"user with {args.history:,} events, {args.readers} in flight"
    for label, key in (("GetInterestProfile", "profile"), ("GetRecentItems", "recent")):
        p50, p99 = figures[f"{key}_p50_ms"], figures[f"{key}_p99_ms"]
        print(f"| {label}, {who}: p50 / p99 | {p50:.2f} / {p99:.2f} ms |")
    print(f"| database size per million events | {size / stored * 1e6 / 2**20:,.0f} MiB |")
    print(f"| database size | {size / 2**20:,.0f} MiB |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
