"""Where the interest service's ingest spends its CPU outside gRPC: the bench's events (10,000
users round robin, 10,000 items in 20 topics, each user's events in time order, messages of
1,000) taken through `intake.new_events` (validation, topics, conversion: the event loop's
share) and then written in groups through `EventStore.write` (the writer thread's share),
in this process, durability `full`, timed in CPU seconds (not wall time, so that other jobs
on the machine change it little), then once more under cProfile.

    .venv/bin/python scripts/profile_ingest.py [--events 200000] [--group 4000] [--top 15]

Prints the CPU per event of each share and the functions with the most CPU of their own. The
items' topics are in the resolver's cache from the start (it never calls the
EmbeddingService), as in a service past its first minutes. Both shares run under one GIL in
the service, so their sum bounds the rate one interest process can ingest. The gRPC side
(decoding, the event loop's per-call work) is not in it: see bench_interest.py.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import math
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from google.protobuf.timestamp_pb2 import Timestamp

from evorec.interest.intake import new_events
from evorec.interest.records import NewEvent
from evorec.interest.store import EventStore
from evorec.interest.topics import TopicResolver
from evorec.v1 import common_pb2, interest_pb2

USERS = 10_000
ITEMS = 10_000
TOPICS = 20


MESSAGE = 1_000
START = 1_600_000_000


def messages(total: int) -> list[list[common_pb2.Event]]:
    """Event n: user n mod USERS, at time n // USERS, so that every user's are in order."""
    events = [
        common_pb2.Event(
            event_id=f"b{n}", user_id=f"user{n % USERS}", item_id=f"i{(n * 7919) % ITEMS}",
            type=common_pb2.EVENT_TYPE_VIEW, event_time=Timestamp(seconds=START + n // USERS),
        )
        for n in range(total)
    ]  # fmt: skip
    return [events[i : i + MESSAGE] for i in range(0, total, MESSAGE)]


def take_in(work: list[list[common_pb2.Event]]) -> list[NewEvent]:
    """The events as the store takes them, through `new_events` with every topic cached."""
    resolver = TopicResolver(cast(Any, None))  # never called: every item is cached
    for item in range(ITEMS):
        resolver.cache.put(f"i{item}", (f"t{item % TOPICS}", False), deadline=math.inf)

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


def write_all(work: list[list[NewEvent]], profile: cProfile.Profile | None) -> float:
    """CPU seconds to write `work` into a new store."""
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(Path(tmp) / "events.sqlite", durability="full")
        try:
            started = time.process_time()
            if profile is not None:
                profile.enable()
            for group in work:
                store.write(group)
            if profile is not None:
                profile.disable()
            return time.process_time() - started
        finally:
            store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--group", type=int, default=4_000, help="events per commit")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    work = messages(args.events)
    started = time.process_time()
    taken = take_in(work)
    intake_cpu = time.process_time() - started
    writer_cpu = write_all(groups(taken, args.group), None)
    per_event = [cpu / args.events * 1e6 for cpu in (intake_cpu, writer_cpu)]
    print(f"{args.events:,} events in messages of {MESSAGE:,}, groups of {args.group:,}")
    print(f"intake CPU: {per_event[0]:.1f} us/event (validation, topics, conversion)")
    print(f"writer CPU: {per_event[1]:.1f} us/event")
    print(
        f"both: {sum(per_event):.1f} us/event ({1e6 / sum(per_event):,.0f} events per CPU second)"
    )
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    taken = take_in(work)
    profile.disable()
    write_all(groups(taken, args.group), profile)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print("profile (CPU, under cProfile's own overhead), by own time:")
    print(out.getvalue().split("\n\n", 2)[-1].rstrip())


if __name__ == "__main__":
    main()
