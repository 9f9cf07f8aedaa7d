"""Where the interest store's write path spends its CPU: the bench's events (10,000 users round
robin, 10,000 items in 20 topics, each user's events in time order) written in groups through
`EventStore.write` in this process, durability `full`, timed in CPU seconds (not wall time,
so that other jobs on the machine change it little), then once more under cProfile.

    .venv/bin/python scripts/profile_ingest.py [--events 200000] [--group 4000] [--top 15]

Prints the writer's CPU per event and the functions with the most CPU of their own. The RPC
side (decoding, validation, the event loop) is not in it: see bench_interest.py.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

from evorec.interest.records import NewEvent
from evorec.interest.store import EventStore

USERS = 10_000
ITEMS = 10_000
TOPICS = 20


def groups(total: int, size: int) -> list[list[NewEvent]]:
    """Event n: user n mod USERS, at time n // USERS, so that every user's are in order."""
    return [
        [
            NewEvent(i, f"b{n}", f"user{n % USERS}", f"i{(n * 7919) % ITEMS}", 1, None, "",
                     1.6e9 + n // USERS, 0.0, f"t{(n * 7919) % ITEMS % TOPICS}", False)
            for i, n in enumerate(range(start, min(start + size, total)))
        ]
        for start in range(0, total, size)
    ]  # fmt: skip


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
    cpu = write_all(groups(args.events, args.group), None)
    print(
        f"writer CPU: {cpu / args.events * 1e6:.1f} us/event ({args.events / cpu:,.0f} events"
        f" per CPU second), {args.events:,} events in groups of {args.group:,}"
    )
    profile = cProfile.Profile(time.process_time)
    write_all(groups(args.events, args.group), profile)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print("profile (CPU, under cProfile's own overhead), by own time:")
    print(out.getvalue().split("\n\n", 2)[-1].rstrip())


if __name__ == "__main__":
    main()
