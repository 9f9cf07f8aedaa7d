"""Overload: `Recommend` offered well above its saturation, with `IngestEvents` beside it; how
the services shed the excess, whether their memory stays bounded, and how fast they recover.

    .venv/bin/python scripts/overload.py [--factor 3] [--seconds 30] [--call-timeout 1]
        [--users 1000 --items 10000 --events-per-user 200] [--plot PNG]
        [--ranking-server defaults --ranking-server max_in_progress=16,max_waiting=64 ...]

The stack of `bench_ranking.py` (see `load_stack.py`). First `Recommend`'s saturation is
measured: 32 callers back to back over one connection for `--saturation-seconds` (after a
warm-up of 3 s), answered calls/s. Then an open-loop load in three phases, each call with a
deadline of `--call-timeout` s: `--seconds` / 3 s at half the saturation ("before"),
`--seconds` at `--factor` times it ("overload"), `--seconds` / 2 at half again ("after");
IngestEvents (5 events a call) is offered throughout at a fifth of the saturation. The
services shed in three places: gRPC core's queue (calls the process's event loop has not
taken yet wait there, first in first out; core refuses arrivals from
`server.max_pending_soft` waiting, all from `server.max_pending`), gRPC's own limit
(`server.max_concurrent_rpcs` calls at once) and the admission (`evorec.platform.admission`:
at most `server.max_in_progress` calls in progress, the others waiting and refused with
RESOURCE_EXHAUSTED once they could no longer be answered in time); and the callers' deadlines
end the rest (DEADLINE_EXCEEDED). Each `--ranking-server` (ranking's `server.*` settings, or
`defaults`) is one run of the three phases on the same stack, ranking restarted with it.
Printed: each phase's offered and answered rates, p50/p99 of the answered calls, failures by
code; the first seconds after the load drops, second by second (the recovery), with
ranking's `Recommend` calls in flight at each second's start (admitted or waiting for a
slot; those still in gRPC core's queue are not seen), and when it recovered (the last
`Recommend` due after the drop that failed or took more than twice its p99 before the
overload; a blip seconds later counts too, so each second after the drop also says how many
`Recommend` calls failed or took that long, against the seconds before the overload); the
cores each process kept busy; each service's resident memory before, at its
peak and at the end (sampled every second from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
from pathlib import Path

from load_stack import (
    LOAD,
    SERVICES,
    Call,
    Load,
    MemorySamples,
    Phase,
    codes,
    measurement_lock,
    measurement_priority,
    pauses_said,
    running_stack,
    window,
)

# The share of the saturation at which IngestEvents is offered in every phase.
INGEST_SHARE = 0.2
# The share of the saturation offered before and after the overload.
CALM_SHARE = 0.5
RECOVERY_SECONDS = 5


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=float, default=3.0, help="overload / saturation")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the overload")
    parser.add_argument("--saturation-seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=32, help="callers at saturation")
    parser.add_argument("--call-timeout", type=float, default=1.0, help="deadline per call, s")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--events-per-user", type=int, default=200)
    parser.add_argument(
        "--ranking-server", action="append", type=server_variant,
        help="ranking's server settings for one run, as KEY=VALUE,... of `server.*` "
        "(max_in_progress=16,max_waiting=64) or `defaults`; repeat for more runs "
        "(default: one run, with the defaults)",
    )  # fmt: skip
    parser.add_argument(
        "--lock", type=Path,
        help="hold this flock (the benchmark lock) for the measured part only, at priority 0",
    )  # fmt: skip
    parser.add_argument("--plot", help="PNG of p99 and memory over time (the first run's)")
    return parser.parse_args()


def main() -> None:
    args = options()
    random.seed(0)
    variants: list[dict[str, str]] = args.ranking_server or [{}]
    with running_stack(args.users, args.items, args.events_per_user) as stack:
        services = stack.services
        with measurement_lock(args.lock, services):
            load = Load(stack, args.call_timeout)
            asyncio.run(load.closed_loop({"Recommend": 1.0}, 3.0, args.workers))  # warm up
            saturation = asyncio.run(
                load.closed_loop({"Recommend": 1.0}, args.saturation_seconds, args.workers)
            )
            print(
                f"machine: {platform.machine()}; {args.items:,} items, {len(stack.users):,} "
                f"users; Recommend saturation ({args.workers} callers, one connection): "
                f"{saturation:,.0f} answered/s; deadline per call {args.call_timeout:g} s",
                flush=True,
            )
            ingest = INGEST_SHARE * saturation
            phases = [
                Phase("before", args.seconds / 3,
                      {"Recommend": CALM_SHARE * saturation, "IngestEvents": ingest}),
                Phase("overload", args.seconds,
                      {"Recommend": args.factor * saturation, "IngestEvents": ingest}),
                Phase("after", args.seconds / 2,
                      {"Recommend": CALM_SHARE * saturation, "IngestEvents": ingest}),
            ]  # fmt: skip
            base_env = dict(services.env)
            for number, variant in enumerate(variants):
                services.stop("ranking")
                services.env = {
                    **base_env,
                    **{f"EVOREC_SERVER__{k.upper()}": v for k, v in variant.items()},
                }
                services.start("ranking")
                if args.lock is not None:  # the new process starts at the script's priority
                    measurement_priority(services)
                asyncio.run(
                    Load(stack, args.call_timeout).closed_loop(
                        {"Recommend": 1.0}, 3.0, args.workers
                    )
                )
                load = Load(stack, args.call_timeout)
                memory = MemorySamples(services)
                asyncio.run(load.run(phases, memory))
                report(load, memory, phases, variant)
                if args.plot and number == 0:
                    from load_stack import plot_timeline

                    marks = [phases[0].seconds, phases[0].seconds + phases[1].seconds]
                    plot_timeline(load.calls, memory, args.plot, marks, bin_s=1.0)


def server_variant(text: str) -> dict[str, str]:
    """`KEY=VALUE,...` (or `defaults`) -> ranking's server settings for one run."""
    if text == "defaults":
        return {}
    pairs = [item.partition("=") for item in text.split(",")]
    if not all(key and sep and value for key, sep, value in pairs):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE,... or defaults: {text!r}")
    return {key: value for key, _, value in pairs}


def in_flight_at(memory: MemorySamples, at: float) -> float:
    """Ranking's Recommend calls in flight at the sample nearest to `at` (s since the start)."""
    nearest = min(range(len(memory.times)), key=lambda n: abs(memory.times[n] - at))
    return memory.recommend_in_flight[nearest]


def recovered_after(calls: list[Call], after: float, p99_before_s: float) -> float:
    """How long after the drop (at `after` s) the last of `calls` was due that failed or
    took more than twice `p99_before_s`, in s; 0 when none did."""
    slow = [
        c.due_s - after
        for c in calls
        if c.due_s >= after and (c.code != "OK" or c.latency_s > 2 * p99_before_s)
    ]
    return max(slow, default=0.0)


def slow_or_failed(calls: list[Call], start: float, end: float, p99_before_s: float) -> int:
    """How many of `calls` due in [start, end) failed or took more than twice `p99_before_s`."""
    return sum(
        start <= c.due_s < end and (c.code != "OK" or c.latency_s > 2 * p99_before_s) for c in calls
    )


def report(load: Load, memory: MemorySamples, phases: list[Phase], variant: dict[str, str]) -> None:
    """Prints one overload run: each phase per RPC, the recovery, the memory."""
    said = ", ".join(f"server.{k} = {v}" for k, v in variant.items()) or "the defaults"
    print(f"\nranking with {said} ({pauses_said(load)}):")
    print(
        "| phase | RPC | offered calls/s | answered/s | p50 / p99 ms (answered) | failed |"
        " failures by code | degraded |"
    )
    print("|---|---|---|---|---|---|---|---|")
    start = 0.0
    bounds = {}
    for phase in phases:
        bounds[phase.name] = (start, start + phase.seconds)
        for kind in phase.rates:
            calls = [c for c in load.calls if c.kind == kind]
            s = window(calls, start, start + phase.seconds)
            print(
                f"| {phase.name} | {kind} | {s['calls'] / phase.seconds:,.0f} |"
                f" {s['answered_per_s']:,.0f} | {s['p50_ms']:.1f} / {s['p99_ms']:.1f} |"
                f" {int(s['failed']):,} of {int(s['calls']):,} | {codes(s)} |"
                f" {int(s['degraded']):,} |",
                flush=True,
            )
        start += phase.seconds
    after = bounds["after"][0]
    recommend = [c for c in load.calls if c.kind == "Recommend"]
    p99_before = window(recommend, *bounds["before"])["p99_ms"]
    print("\nRecovery, the seconds after the load drops (every RPC of the load):")
    print(
        "| second after | calls | p50 / p99 ms (answered) | failed | failures by code |"
        " Recommend calls in ranking at its start | Recommend failed or slower than twice"
        " its p99 before |"
    )
    print("|---|---|---|---|---|---|---|")
    for second in range(RECOVERY_SECONDS):
        s = window(load.calls, after + second, after + second + 1)
        late = slow_or_failed(recommend, after + second, after + second + 1, p99_before / 1000)
        print(
            f"| {second + 1} | {int(s['calls']):,} | {s['p50_ms']:.1f} / {s['p99_ms']:.1f} |"
            f" {int(s['failed']):,} | {codes(s)} | {in_flight_at(memory, after + second):,.0f} |"
            f" {late} |"
        )
    before_start, before_end = bounds["before"]
    usual = slow_or_failed(recommend, before_start, before_end, p99_before / 1000)
    print(
        f"\n(Before the overload, {usual / (before_end - before_start):.1f} Recommend calls a"
        " second failed or took more than twice that p99.)"
    )
    late = recovered_after(recommend, after, p99_before / 1000)
    slow = f"failed or took more than twice its p99 before the overload ({p99_before:.1f} ms)"
    print(
        f"\nRecovered {late * 1000:,.0f} ms after the drop: the last Recommend that {slow} was"
        " due then"
        if late
        else f"\nRecovered at once: no Recommend due after the drop {slow}"
    )
    print(f"\nCPU: cores kept busy in each phase (of the machine's {os.cpu_count()}):")
    print("| phase | " + " | ".join([*SERVICES, LOAD]) + " |")
    print("|---|" + "---|" * (len(SERVICES) + 1))
    for name, (begin, end) in bounds.items():
        used = [memory.cores(n, begin, end) for n in [*SERVICES, LOAD]]
        print(f"| {name} | " + " | ".join(f"{u:.2f}" for u in used) + " |")
    print("\nResident memory of each service (MiB; sampled every second):")
    print("| service | before the overload (mean) | peak | at the end |")
    print("|---|---|---|---|")
    for name in SERVICES:
        samples = memory.mib[name]
        calm = [m for t, m in zip(memory.times, samples, strict=True) if t < bounds["before"][1]]
        print(
            f"| {name} | {statistics.mean(calm or samples[:1]):,.0f} | {max(samples):,.0f} |"
            f" {samples[-1]:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
