"""Where the interest service's ingest spends its CPU outside gRPC: the bench's events (10,000
users round robin, 10,000 items in 20 topics, each user's events in time order, messages of
1,000) taken through `intake.new_events` (validation, topics, conversion: the event loop's
share) and then written in groups through `EventStore.write` (the writer thread's share),
in this process, durability `full`, timed in CPU seconds (not wall time, so that other jobs
on the machine change it little), then once more under cProfile.

    .venv/bin/python scripts/profile_ingest.py [--events 200000] [--group 4000] [--top 15]
        [--start-events 0] [--event-ids counter|random|time-ordered] [--varied-items]

Prints the CPU per event of each share and the functions with the most CPU of their own;
for the writer, its own thread's CPU and the process's (with the WAL checkpoint thread,
which runs beside it), its wall time, the events stored at the end, and its process's file
traffic per event until the store is closed (bytes passed to and from the kernel by system
calls, not bytes that reach the disk, and write calls: the WAL, the checkpoints, pages read
into SQLite's cache; Linux only). --start-events N first bulk-loads N earlier events of the
same users (`evorec.interest.bulk`, as bench_interest.py does), so that the writer is
measured on a store of that size (10 million events take about 2.5 GB in the temporary
folder: the loaded store and the measured copy). The items' topics are in the resolver's
cache from the start (it never calls the EmbeddingService), as in a service past its first
minutes. --event-ids and --varied-items shape the events as real traffic may be
(`bench_events.Shape`, shared with bench_interest.py): ids in random order insert all over
the unique index of event ids, and users with varied topics have derived state of many rows.
Both shares run under one GIL in the service, so their sum bounds the rate one interest
process can ingest. The gRPC side (decoding, the event loop's per-call work) is not in it:
see bench_interest.py.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import math
import os
import pstats
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from bench_events import Shape, event_fields, event_id
from google.protobuf.timestamp_pb2 import Timestamp

from evorec.interest.bulk import BulkRow, bulk_load
from evorec.interest.intake import new_events
from evorec.interest.records import NewEvent
from evorec.interest.store import EventStore
from evorec.interest.topics import TopicResolver
from evorec.v1 import common_pb2, interest_pb2

ITEMS = 10_000
TOPICS = 20
MESSAGE = 1_000


def topic_of(item: str) -> str:
    return f"t{int(item[1:]) % TOPICS}"


def messages(first: int, total: int, shape: Shape) -> list[list[common_pb2.Event]]:
    """Events first to first + total - 1, in messages of MESSAGE."""
    events = []
    for n in range(first, first + total):
        user, item, at = event_fields(n, ITEMS, shape)
        events.append(
            common_pb2.Event(
                event_id=event_id(n, shape, "b"), user_id=user, item_id=item,
                type=common_pb2.EVENT_TYPE_VIEW, event_time=Timestamp(seconds=at),
            )
        )  # fmt: skip
    return [events[i : i + MESSAGE] for i in range(0, total, MESSAGE)]


def earlier_rows(count: int, shape: Shape) -> Iterator[BulkRow]:
    """Events 0 to count - 1 as the bulk loader takes them, topics resolved."""
    view = common_pb2.EVENT_TYPE_VIEW
    for n in range(count):
        user, item, at = event_fields(n, ITEMS, shape)
        yield (
            event_id(n, shape, "f", 10), user, item, view, None, "", float(at), float(at),
            0, topic_of(item),
        )  # fmt: skip


def take_in(work: list[list[common_pb2.Event]]) -> list[NewEvent]:
    """The events as the store takes them, through `new_events` with every topic cached."""
    resolver = TopicResolver(cast(Any, None))  # never called: every item is cached
    for item in range(ITEMS):
        resolver.cache.put(f"i{item}", (topic_of(f"i{item}"), False), deadline=math.inf)

    async def all_messages() -> list[NewEvent]:
        taken: list[NewEvent] = []
        for offset, events in enumerate(work):
            summary = interest_pb2.IngestSummary()
            taken += await new_events(events, offset * MESSAGE, resolver, summary, time.time())
            assert not summary.rejected
        return taken

    return asyncio.run(all_messages())


def groups(events: list[NewEvent], size: int) -> list[list[NewEvent]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def file_traffic() -> dict[str, int]:
    """This process's bytes written and read through system calls, and its write calls, so
    far (Linux's /proc/self/io; empty elsewhere)."""
    try:
        lines = Path("/proc/self/io").read_text().splitlines()
    except OSError:
        return {}
    counters = dict(line.split(": ") for line in lines)
    return {key: int(counters[key]) for key in ("wchar", "rchar", "syscw")}


def write_all(
    work: list[list[NewEvent]], profile: cProfile.Profile | None, start: Path | None
) -> dict[str, float]:
    """Writes `work` into a new store (a copy of the store `start`, when given): the CPU
    seconds of this thread (the writer's) and of the process, the wall seconds, the events
    stored at the end, and the file traffic until the store is closed (`file_traffic`)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.sqlite"
        if start is not None:  # the database and its WAL (empty after the load's checkpoint)
            for file in start.parent.glob(start.name + "*"):
                shutil.copy(file, path.parent / file.name.replace(start.name, path.name))
            os.sync()  # the copy's writing-back is not the writer's
        store = EventStore(path, durability="full")
        try:
            before = file_traffic()
            started = time.perf_counter(), time.thread_time(), time.process_time()
            if profile is not None:
                profile.enable()
            for group in work:
                store.write(group)
            if profile is not None:
                profile.disable()
            ended = time.perf_counter(), time.thread_time(), time.process_time()
            stored = store.db.execute("SELECT count(*) FROM events").fetchone()[0]
        finally:
            store.close()
        after = file_traffic()
        wall, thread_cpu, cpu = (end - begin for begin, end in zip(started, ended, strict=True))
        return {"thread_cpu": thread_cpu, "cpu": cpu, "wall": wall, "stored": stored} | {
            key: after[key] - before[key] for key in before
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--group", type=int, default=4_000, help="events per commit")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--start-events", type=int, default=0, help="bulk-loaded first")
    Shape.add_options(parser)
    args = parser.parse_args(argv)
    if args.start_events < 0:
        parser.error("--start-events must be 0 or more")
    with tempfile.TemporaryDirectory() as tmp:
        start = None
        shape = Shape.of(args)
        if args.start_events:
            start = Path(tmp) / "start.sqlite"
            loading = time.perf_counter()
            bulk_load(start, earlier_rows(args.start_events, shape))
            print(
                f"bulk-loaded {args.start_events:,} events in"
                f" {time.perf_counter() - loading:,.0f} s"
            )
        measure(args, shape, start)


def measure(args: argparse.Namespace, shape: Shape, start: Path | None) -> None:
    """Prints the shares' cost per event (see the module docstring), then the profile."""
    work = messages(args.start_events, args.events, shape)
    started = time.process_time()
    taken = take_in(work)
    intake_cpu = time.process_time() - started
    writer = write_all(groups(taken, args.group), None, start)
    per_event = [cpu / args.events * 1e6 for cpu in (intake_cpu, writer["thread_cpu"])]
    print(
        f"{args.events:,} events in messages of {MESSAGE:,}, groups of {args.group:,},"
        f" into a store of {args.start_events:,}; {writer['stored']:,} stored at the end"
    )
    print(f"event ids: {shape.ids}; each user's items: {'varied' if shape.varied_items else 'one'}")
    print(f"intake CPU: {per_event[0]:.1f} us/event (validation, topics, conversion)")
    print(
        f"writer CPU: {per_event[1]:.1f} us/event in its thread,"
        f" {writer['cpu'] / args.events * 1e6:.1f} with the checkpoint thread"
        f" (wall {writer['wall'] / args.events * 1e6:.1f} us/event)"
    )
    print(
        f"both, in their threads: {sum(per_event):.1f} us/event"
        f" ({1e6 / sum(per_event):,.0f} events per CPU second)"
    )
    if "wchar" in writer:
        print(
            f"writer file traffic per event: {writer['wchar'] / args.events:,.0f} bytes written"
            f" in {writer['syscw'] / args.events:.2f} write calls,"
            f" {writer['rchar'] / args.events:,.0f} bytes read"
        )
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    taken = take_in(work)
    profile.disable()
    write_all(groups(taken, args.group), profile, start)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print("profile (this thread's CPU, under cProfile's own overhead), by own time:")
    print(out.getvalue().split("\n\n", 2)[-1].rstrip())


if __name__ == "__main__":
    main()
