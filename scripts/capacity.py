"""How many machines a load needs: ranking replicas, interest shards and model servers, from
the figures measured on the 2-core development machine (docs/capacity.md explains each rule).

    .venv/bin/python scripts/capacity.py --interest docs/benchmarks/interest.json
        [--events-per-s 20000] [--recommendations-per-s 2000] [--users 10000000]
        [--events-per-user 1000] [--items 1000000]

--interest is bench_interest.py --json's output (ingest rate, database size per event); the
ranking and model figures default to BENCHMARKS.md's (Recommend at saturation, the bare
model) and can be given measured anew (--model-users-per-s; --recommend-per-replica is a
replica's saturation at 10,000 items, which the plan scales to --items by how the measured
saturation fell with the catalog). Every
replica is a 2-core machine like the one measured; HEADROOM keeps each below saturation.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

HEADROOM = 0.6  # plan each replica to this share of its measured saturation
# BENCHMARKS.md, "Ranking: Recommend throughput and latency" (commit 8064f45): one 2-core
# machine running the whole stack and its load generator.
RECOMMEND_PER_REPLICA = 375.0
MODEL_USERS_PER_S = 1_855.0  # the bare SavedModel on 2 CPU cores, batches of 256, 10k items
MODEL_ITEMS = 10_000  # the catalog those two figures were measured with
# How Recommend's saturation falls as the catalog grows: scripts/bench_catalog.py's figure at
# each size over its figure at 10,000 items (BENCHMARKS.md "Large catalogs", "Ranking's
# memory, start-up and per-request work at a million items"; the same script, machine and
# code at each size, commit 6bb55bf; at a million items the lowest of three runs). A catalog
# between two sizes takes the larger one's; beyond the largest, the cost grows with the
# items (each vector index search reads a fixed share of its table).
RECOMMEND_SHARE_BY_ITEMS = {10_000: 1.0, 100_000: 168.4 / 244.2, 1_000_000: 91.5 / 244.2}
SHARD_DISK_GIB = 200.0  # the disk one interest shard is given (its volume)
SHARD_CACHE_GIB = 8.0  # memory for SQLite's and the OS's cache of the hot pages


def catalog_share(items: int) -> float:
    """The share of its 10,000-item saturation a ranking replica keeps at `items`."""
    for size, share in sorted(RECOMMEND_SHARE_BY_ITEMS.items()):
        if items <= size:
            return share
    largest = max(RECOMMEND_SHARE_BY_ITEMS)
    return RECOMMEND_SHARE_BY_ITEMS[largest] * largest / items


def plan(
    interest: dict[str, float],
    events_per_s: float,
    recommendations_per_s: float,
    users: int,
    events_per_user: int,
    items: int,
    recommend_per_replica: float,
    model_users_per_s: float,
) -> list[tuple[str, str, str]]:
    """(what, how many, why) rows."""
    ingest = min(interest["batch_events_per_s"], interest["stream_events_per_s"])
    bytes_per_event = interest["database_mib"] * 2**20 / interest["stored_events"]
    stored_gib = users * events_per_user * bytes_per_event / 2**30
    by_ingest = math.ceil(events_per_s / (ingest * HEADROOM))
    by_disk = math.ceil(stored_gib / (SHARD_DISK_GIB * HEADROOM))
    # Each Recommend reads its user's recent items once; reads run beside the writer (WAL),
    # one at a time per core: p50 of GetRecentItems bounds them.
    reads_per_shard = 1_000.0 / interest["recent_p50_ms"]
    by_reads = math.ceil(recommendations_per_s / (reads_per_shard * HEADROOM))
    shards = max(by_ingest, by_disk, by_reads, 1)
    # The served model returns user vectors only (ranking searches the items through its
    # vector index), so its cost does not grow with the catalog; the figure was measured
    # scoring 10,000 items besides, so it errs on the side of more servers.
    model_servers = math.ceil(recommendations_per_s / (model_users_per_s * HEADROOM))
    per_replica = recommend_per_replica * catalog_share(items)
    replicas = math.ceil(recommendations_per_s / (per_replica * HEADROOM))
    return [
        ("ranking replicas (2 cores each)", f"{replicas:,}",
         f"{recommendations_per_s:,.0f}/s over {per_replica:,.0f}/s ({recommend_per_replica:,.0f}"
         f"/s at {MODEL_ITEMS:,} items x {catalog_share(items):.2f} at {items:,}) x {HEADROOM}"),
        ("interest shards (by user)", f"{shards:,}",
         f"ingest {by_ingest:,} ({events_per_s:,.0f}/s over {ingest:,.0f}/s x {HEADROOM}),"
         f" disk {by_disk:,} ({stored_gib:,.0f} GiB over {SHARD_DISK_GIB:,.0f} GiB x"
         f" {HEADROOM}), reads {by_reads:,} ({reads_per_shard:,.0f}/s per shard)"),
        ("model servers (2 CPU cores each; user vectors)", f"{model_servers:,}",
         f"{recommendations_per_s:,.0f} users/s over {model_users_per_s:,.0f}/s x {HEADROOM}"),
        ("events stored per shard", f"{users * events_per_user / shards:,.0f}",
         f"{bytes_per_event:,.0f} bytes each, {stored_gib / shards:,.1f} GiB"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interest", type=Path, required=True, help="bench_interest --json")
    parser.add_argument("--events-per-s", type=float, default=20_000)
    parser.add_argument("--recommendations-per-s", type=float, default=2_000)
    parser.add_argument("--users", type=int, default=10_000_000)
    parser.add_argument("--events-per-user", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument(
        "--recommend-per-replica",
        type=float,
        default=RECOMMEND_PER_REPLICA,
        help="a ranking replica's Recommend/s at saturation over 10,000 items",
    )
    parser.add_argument("--model-users-per-s", type=float, default=MODEL_USERS_PER_S)
    args = parser.parse_args(argv)
    rows = plan(
        json.loads(args.interest.read_text()), args.events_per_s, args.recommendations_per_s,
        args.users, args.events_per_user, args.items, args.recommend_per_replica,
        args.model_users_per_s,
    )  # fmt: skip
    print(
        f"load: {args.events_per_s:,.0f} events/s, {args.recommendations_per_s:,.0f}"
        f" recommendations/s, {args.users:,} users x {args.events_per_user:,} events,"
        f" {args.items:,} items"
    )
    print("| what | how many | from |\n|---|---|---|")
    for what, count, why in rows:
        print(f"| {what} | {count} | {why} |")


if __name__ == "__main__":
    main()
