"""Soak: a long steady load at 60 % of saturation across `IngestEvents`, `Recommend` and
`GetInterestProfile`; errors, p99 over time and each service's memory over time.

    .venv/bin/python scripts/soak.py [--minutes 10] [--share 0.6] [--call-timeout 2]
        [--users 1000 --items 10000 --events-per-user 200] [--plot PNG]

The stack of `bench_ranking.py` (see `load_stack.py`). The saturation of the mix (60 %
Recommend, 20 % GetInterestProfile, 20 % IngestEvents of 5 events, drawn at random per
call) is measured first: 32 callers back to back over one connection to each service for
`--saturation-seconds` after a warm-up of 3 s, answered calls/s. Then the same mix is offered
open-loop at `--share` of it for `--minutes`, each call with a deadline of `--call-timeout` s.
Printed: the saturation, the offered rate, then per window (a tenth of the run, at least 1 s)
the calls, p50/p99 of each RPC and the failures by code, and each service's resident memory
(sampled every second from /proc) per window, and at the start, the end and its peak, with
the growth from the first to the last window's mean, and beside it the interest service's
SQLite heap (its `evorec_sqlite_heap_bytes`), to tell its page caches filling from a leak.
The plot shows p99 per RPC and memory over time.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
from collections.abc import Iterator
from pathlib import Path

from load_stack import (
    SERVICES,
    Load,
    MemorySamples,
    Phase,
    codes,
    failures,
    measurement_lock,
    pauses_said,
    running_stack,
    window,
)

MIX = {"Recommend": 0.6, "GetInterestProfile": 0.2, "IngestEvents": 0.2}
WINDOWS = 10
HEAP = "interest service's SQLite heap"


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--share", type=float, default=0.6, help="offered / saturation")
    parser.add_argument("--saturation-seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=32, help="callers at saturation")
    parser.add_argument("--call-timeout", type=float, default=2.0, help="deadline per call, s")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--events-per-user", type=int, default=200)
    parser.add_argument(
        "--lock", type=Path,
        help="hold this flock (the benchmark lock) for the measured part only, at priority 0",
    )  # fmt: skip
    parser.add_argument("--plot", help="PNG of p99 and memory over time")
    return parser.parse_args()


def spans(seconds: float, width: float) -> Iterator[tuple[float, float]]:
    """The run's windows, (start, end) in s since the load started."""
    start = 0.0
    while start < seconds - 1e-9:
        end = min(seconds, start + width)
        yield start, end
        start = end


def memory_per_window(
    memory: MemorySamples, windows: list[tuple[float, float]]
) -> list[tuple[float, dict[str, float]]]:
    """(start, mean MiB of each service and of the interest service's SQLite heap) of each
    window that has samples."""
    series = {**{name: memory.mib[name] for name in SERVICES}, HEAP: memory.interest_sqlite_mib}
    rows = []
    for start, end in windows:
        if inside := [n for n, t in enumerate(memory.times) if start <= t < end]:
            means = {name: statistics.mean(v[n] for n in inside) for name, v in series.items()}
            rows.append((start, means))
    return rows


def main() -> None:
    args = options()
    random.seed(0)
    seconds = args.minutes * 60
    with (
        running_stack(args.users, args.items, args.events_per_user) as stack,
        measurement_lock(args.lock, stack.services),
    ):
        load = Load(stack, args.call_timeout)
        asyncio.run(load.closed_loop(MIX, 3.0, args.workers))  # warm up
        saturation = asyncio.run(load.closed_loop(MIX, args.saturation_seconds, args.workers))
        rate = args.share * saturation
        print(
            f"machine: {platform.machine()}; {args.items:,} items, {len(stack.users):,} users; "
            f"saturation of the mix ({args.workers} callers): {saturation:,.0f} answered/s; "
            f"offered: {rate:,.0f} calls/s ({args.share:.0%}) for {seconds:,.0f} s",
            flush=True,
        )
        phase = Phase("soak", seconds, {kind: share * rate for kind, share in MIX.items()})
        load = Load(stack, args.call_timeout)
        memory = MemorySamples(stack.services)
        asyncio.run(load.run([phase], memory))

    total = window(load.calls, 0, seconds)
    print(
        f"calls: {int(total['calls']):,}; failed: {int(total['failed']):,} ({codes(total)}); "
        f"degraded Recommend answers: {int(total['degraded']):,}; {pauses_said(load)}"
    )
    if rows := failures(load.calls):
        print("| RPC | code | message | calls |\n|---|---|---|---|\n" + "\n".join(rows))
    width = max(1.0, seconds / WINDOWS)
    print("| from s | calls | " + " | ".join(f"{k} p50 / p99 ms" for k in MIX) + " | failed |")
    print("|---|---|" + "---|" * len(MIX) + "---|")
    for start, end in spans(seconds, width):
        s = window(load.calls, start, end)
        cells = []
        for kind in MIX:
            k = window([c for c in load.calls if c.kind == kind], start, end)
            cells.append(f"{k['p50_ms']:.1f} / {k['p99_ms']:.1f}")
        print(f"| {start:,.0f} | {int(s['calls']):,} | " + " | ".join(cells) + f" | {codes(s)} |")
    per_window = memory_per_window(memory, list(spans(seconds, width)))
    print(
        "\nResident memory per window (MiB, mean of the window's samples; whether it levels off):"
    )
    print("| from s | " + " | ".join(SERVICES) + f" | {HEAP} |")
    print("|---|" + "---|" * (len(SERVICES) + 1))
    for start, means in per_window:
        print(f"| {start:,.0f} | " + " | ".join(f"{m:,.1f}" for m in means.values()) + " |")
    (_, first), (_, last) = per_window[0], per_window[-1]
    print("\nResident memory of each service (MiB; sampled every second):")
    print("| service | first window (mean) | last window (mean) | growth | peak |")
    print("|---|---|---|---|---|")
    for name in SERVICES:
        print(
            f"| {name} | {first[name]:,.0f} | {last[name]:,.0f} |"
            f" {last[name] - first[name]:+,.0f} | {max(memory.mib[name]):,.0f} |"
        )
    print(
        f"\nThe {HEAP} (page caches, schemas, statements; MiB): "
        f"first window {first[HEAP]:,.1f}, last window {last[HEAP]:,.1f}, "
        f"growth {last[HEAP] - first[HEAP]:+,.1f}, peak {max(memory.interest_sqlite_mib):,.1f}"
    )
    if args.plot:
        from load_stack import plot_timeline

        plot_timeline(load.calls, memory, args.plot, [], bin_s=max(1.0, seconds / 60))


if __name__ == "__main__":
    main()
