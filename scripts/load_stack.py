"""What the load scripts (`overload.py`, `soak.py`) share: the service stack they load, an
open-loop mixed load of `Recommend`, `GetInterestProfile` and `IngestEvents` whose rate can
change over time, the resident memory of each service process, and per-second summaries.

The stack is `bench_ranking.py`'s (simulated catalog and users, a Transformer with text of the
reported architecture trained for two epochs and exported, the four services as `evorec serve`
processes with the model in-process, every user's events ingested); its pieces are imported
from there, so that the load scripts measure the same services as the ranking benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import itertools
import os
import random
import re
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pandas as pd
from bench_ranking import Services, cpu_seconds, ingest, percentile
from google.protobuf.timestamp_pb2 import Timestamp

from evorec.data.artifacts import DatasetLayout
from evorec.data.synth import SimulatorConfig
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.model_cli import train_and_export
from evorec.preparation import prepare_synthetic
from evorec.v1 import (
    common_pb2,
    interest_pb2,
    interest_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
)

SERVICES = ("preprocess", "embedding", "interest", "ranking")
KINDS = ("Recommend", "GetInterestProfile", "IngestEvents")
# The load generator's own entry among the CPU samples.
LOAD = "load generator"
# Events in each IngestEvents call of the load (a client sending a small batch).
EVENTS_PER_INGEST = 5
# How often the load generator starts the calls that are due (an open loop in ticks, so that
# rates of a thousand calls/s do not need a timer per call).
TICK_S = 0.005
# How often the load moves what its process holds out of reach of Python's full collections
# (see Load.run).
FREEZE_EVERY_S = 1.0


@dataclass
class Stack:
    """The running services, their stored users and the catalog's items."""

    services: Services
    users: list[str]
    items: list[str]
    work: Path


@contextmanager
def running_stack(
    users: int, items: int, events_per_user: int, env_overrides: dict[str, str] | None = None
) -> Iterator[Stack]:
    """Simulates, prepares and trains as `bench_ranking.py` does, starts the four services
    (with `env_overrides` added to their settings) and ingests every user's events."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = SimulatorConfig(
            users=users, items=items, topics=20, events_per_user=events_per_user
        )
        prepare_synthetic(work / "dataset", work / "raw", config)
        layout = DatasetLayout(work / "dataset")
        train_and_export(
            layout, EncoderConfig(), TrainingConfig(epochs=2), work / "models", "encoder"
        )
        events = pd.read_parquet(layout.events, columns=["user_id", "item_id"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
        env.update(
            EVOREC_DATA_DIR=str(work / "data"),
            EVOREC_DATASET=str(work / "dataset"),
            EVOREC_SERVING__BASE_PATH=str(work / "models"),
            EVOREC_LOG_LEVEL="WARNING",
            **(env_overrides or {}),
        )
        services = Services(env)
        try:
            for name in SERVICES:
                services.start(name)
            asyncio.run(ingest(services.target("interest"), layout))
            yield Stack(
                services,
                sorted(events["user_id"].unique()),
                sorted(events["item_id"].unique()),
                work,
            )
        finally:
            services.stop_all()


@contextmanager
def measurement_lock(path: Path | None, services: Services) -> Iterator[None]:
    """Holds the machine-wide benchmark lock (an flock on `path`) for the measured part only
    and runs that part at normal priority: the setup before it (simulation, training, ingest)
    may run niced and without the lock, as every non-timing job here does. Once the lock is
    held, every thread of this process and of the services is set back to priority 0 (on
    Linux a thread's nice value is its own, so each is set; this needs root or
    CAP_SYS_NICE where they were niced). Without `path`, nothing is locked or changed."""
    if path is None:
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            measurement_priority(services)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def measurement_priority(services: Services) -> None:
    """Sets every thread of this process and of the services to priority 0."""
    for pid in [os.getpid(), *(p.pid for p in services.processes.values())]:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
                os.setpriority(os.PRIO_PROCESS, int(task.name), 0)


def rss_mib(pid: int) -> float:
    """The resident memory of process `pid` in MiB (VmRSS of /proc/PID/status; Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def scrape(url: str) -> str:
    """A Prometheus page."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def gauge(page: str, name: str) -> float:
    """The value of the unlabelled metric `name` on a Prometheus page (NaN when absent)."""
    for line in page.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return float("nan")


def method_gauge(page: str, name: str, method: str) -> float:
    """The sum over `name`'s series of gRPC method `method` on a Prometheus page (0 when
    none: a server shows a method's series only once it was called)."""
    marker = f'grpc_method="{method}"'
    return sum(
        float(line.rsplit(maxsplit=1)[1])
        for line in page.splitlines()
        if line.startswith(f"{name}{{") and marker in line
    )


@dataclass
class MemorySamples:
    """Each service process's resident memory, sampled every `interval_s` while running, and
    the CPU time used so far by each service and by the load generator (this process, key
    LOAD), so that a report can say where the two cores went."""

    services: Services
    interval_s: float = 1.0
    times: list[float] = field(default_factory=list)
    mib: dict[str, list[float]] = field(default_factory=dict)
    cpu_s: dict[str, list[float]] = field(default_factory=dict)
    # The interest service's SQLite heap (its `evorec_sqlite_heap_bytes`), MiB, per sample:
    # how much of its resident memory is SQLite's page caches.
    interest_sqlite_mib: list[float] = field(default_factory=list)
    # Ranking's Recommend calls in flight (its `grpc_server_in_flight`: waiting for a slot
    # of the admission or in progress), per sample; calls still in gRPC core's queue are not
    # counted.
    recommend_in_flight: list[float] = field(default_factory=list)

    async def run(self, started: float, until: Callable[[], bool]) -> None:
        while not until():
            self.times.append(time.perf_counter() - started)
            for name in SERVICES:
                pid = self.services.processes[name].pid
                self.mib.setdefault(name, []).append(rss_mib(pid))
                self.cpu_s.setdefault(name, []).append(cpu_seconds(pid))
            self.cpu_s.setdefault(LOAD, []).append(cpu_seconds(os.getpid()))
            page = await asyncio.to_thread(scrape, self.services.metrics_url("interest"))
            self.interest_sqlite_mib.append(gauge(page, "evorec_sqlite_heap_bytes") / 2**20)
            page = await asyncio.to_thread(scrape, self.services.metrics_url("ranking"))
            self.recommend_in_flight.append(
                method_gauge(page, "grpc_server_in_flight", "Recommend")
            )
            await asyncio.sleep(self.interval_s)

    def cores(self, name: str, start: float, end: float) -> float:
        """Cores process `name` kept busy on average between `start` and `end` (s since the
        load started), from the samples nearest inside that span."""
        inside = [n for n, t in enumerate(self.times) if start <= t <= end]
        if len(inside) < 2:
            return float("nan")
        first, last = inside[0], inside[-1]
        used = self.cpu_s[name][last] - self.cpu_s[name][first]
        return used / (self.times[last] - self.times[first])


@dataclass(frozen=True)
class Call:
    """One call of the load: when it was due (s since the start), what, how long it took
    from when it was due, its status code's name (`OK` when answered) and, when it failed,
    the status's message (which says which bound or deadline refused it)."""

    due_s: float
    kind: str
    latency_s: float
    code: str
    degraded: bool = False
    details: str = ""


@dataclass(frozen=True)
class Phase:
    """A stretch of the load at fixed offered rates (calls/s of each kind)."""

    name: str
    seconds: float
    rates: dict[str, float]


class Load:
    """Open-loop callers of the three RPCs over one connection to each service: a call is
    started when it is due whether or not earlier ones have answered (no coordinated
    omission); its latency counts from when it was due."""

    def __init__(self, stack: Stack, call_timeout: float) -> None:
        self.stack = stack
        self.call_timeout = call_timeout
        self.calls: list[Call] = []
        self.sequence = itertools.count()
        # How long each of this process's full garbage collections paused the load, s.
        self.collection_pauses: list[float] = []
        self.started = 0.0

    async def _one(self, kind: str, due: float, stubs: dict[str, object]) -> None:
        user = random.choice(self.stack.users)
        degraded = False
        try:
            if kind == "Recommend":
                ranking: ranking_pb2_grpc.RankingServiceStub = stubs["ranking"]  # type: ignore[assignment]
                response = await ranking.Recommend(
                    ranking_pb2.RecommendRequest(user_id=user, k=10), timeout=self.call_timeout
                )
                degraded = bool(response.degraded_sources)
            elif kind == "GetInterestProfile":
                interest: interest_pb2_grpc.InterestServiceStub = stubs["interest"]  # type: ignore[assignment]
                await interest.GetInterestProfile(
                    interest_pb2.GetInterestProfileRequest(user_id=user),
                    timeout=self.call_timeout,
                )
            else:
                interest = stubs["interest"]  # type: ignore[assignment]
                now = Timestamp()
                now.GetCurrentTime()
                events = [
                    common_pb2.Event(
                        event_id=f"load-{os.getpid()}-{next(self.sequence)}", user_id=user,
                        item_id=random.choice(self.stack.items),
                        type=common_pb2.EVENT_TYPE_VIEW, event_time=now,
                    )
                    for _ in range(EVENTS_PER_INGEST)
                ]  # fmt: skip
                await interest.IngestEvents(
                    interest_pb2.IngestEventsRequest(events=events), timeout=self.call_timeout
                )
            code, details = "OK", ""
        except grpc.aio.AioRpcError as error:
            code, details = error.code().name, error.details() or ""
        latency = time.perf_counter() - due
        self.calls.append(Call(due - self.started, kind, latency, code, degraded, details))

    @asynccontextmanager
    async def _stubs(self) -> AsyncIterator[dict[str, object]]:
        services = self.stack.services
        async with (
            grpc.aio.insecure_channel(services.target("ranking")) as ranking,
            grpc.aio.insecure_channel(services.target("interest")) as interest,
        ):
            yield {
                "ranking": ranking_pb2_grpc.RankingServiceStub(ranking),
                "interest": interest_pb2_grpc.InterestServiceStub(interest),
            }

    async def closed_loop(self, shares: dict[str, float], seconds: float, workers: int) -> float:
        """`workers` callers back to back for `seconds`, each call's RPC drawn by `shares`:
        the answered (OK) calls per second, the saturation of that mix. Its calls are kept
        apart from the open-loop ones."""
        kinds, weights = list(shares), list(shares.values())
        kept, self.calls = self.calls, []
        async with self._stubs() as stubs:
            self.started = time.perf_counter()
            end = self.started + seconds

            async def worker() -> None:
                while time.perf_counter() < end:
                    kind = random.choices(kinds, weights)[0]
                    await self._one(kind, time.perf_counter(), stubs)

            await asyncio.gather(*(worker() for _ in range(workers)))
            elapsed = time.perf_counter() - self.started
        answered = sum(c.code == "OK" for c in self.calls)
        self.calls = kept
        return answered / elapsed

    async def run(self, phases: list[Phase], memory: MemorySamples | None = None) -> None:
        """Offers each phase's rates for its seconds, in order; returns when every call has
        answered or failed.

        Python's full collections would pause the sender: this process holds TensorFlow's
        objects from training the model and a record of every call, and a collection scans
        them all, sends no call meanwhile, and then sends the calls that fell due at once, a
        burst that every service is charged for. So what the process holds is frozen (out of
        the collections' reach) when the load starts and every FREEZE_EVERY_S; the pauses
        that are left are counted in `collection_pauses`."""
        gc.freeze()
        with collections_timed(self.collection_pauses):
            await self._offer(phases, memory)

    async def _offer(self, phases: list[Phase], memory: MemorySamples | None) -> None:
        async with self._stubs() as stubs:
            tasks: set[asyncio.Task[None]] = set()
            self.started = time.perf_counter()
            sampler = None
            done = False
            if memory is not None:
                sampler = asyncio.create_task(memory.run(self.started, lambda: done))
            phase_start = self.started
            for phase in phases:
                sent = dict.fromkeys(KINDS, 0)
                end = phase_start + phase.seconds
                frozen = phase_start
                while (now := time.perf_counter()) < end:
                    if now - frozen > FREEZE_EVERY_S:
                        gc.freeze()
                        frozen = now
                    for kind, rate in phase.rates.items():
                        due_count = int((now - phase_start) * rate)
                        for n in range(sent[kind], due_count):
                            due = phase_start + n / rate
                            task = asyncio.create_task(self._one(kind, due, stubs))
                            tasks.add(task)
                            task.add_done_callback(tasks.discard)
                        sent[kind] = max(sent[kind], due_count)
                    await asyncio.sleep(TICK_S)
                phase_start = end
            await asyncio.gather(*tasks)
            done = True
            if sampler is not None:
                await sampler


@contextmanager
def collections_timed(pauses: list[float]) -> Iterator[None]:
    """Appends to `pauses` how long each full garbage collection of this process took, s."""
    started = 0.0

    def timed(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if info["generation"] == 2:
            if phase == "start":
                started = time.perf_counter()
            else:
                pauses.append(time.perf_counter() - started)

    gc.callbacks.append(timed)
    try:
        yield
    finally:
        gc.callbacks.remove(timed)


def pauses_said(load: Load) -> str:
    """One line on the load's own full collections while it ran (they delay its calls)."""
    pauses = load.collection_pauses
    longest = f", longest {max(pauses) * 1000:.1f} ms" if pauses else ""
    return f"the load's own full garbage collections while it ran: {len(pauses)}{longest}"


def window(calls: list[Call], start: float, end: float) -> dict[str, float]:
    """Summary of the calls due in [start, end): count, answered per second, p50/p99 of the
    answered (ms), and the count of each failure code."""
    chosen = [c for c in calls if start <= c.due_s < end]
    answered = [c.latency_s for c in chosen if c.code == "OK"]
    summary: dict[str, float] = {
        "calls": len(chosen),
        "answered_per_s": len(answered) / (end - start) if end > start else 0.0,
        "p50_ms": percentile(answered, 0.5) * 1000 if answered else float("nan"),
        "p99_ms": percentile(answered, 0.99) * 1000 if answered else float("nan"),
        "failed": sum(c.code != "OK" for c in chosen),
        "degraded": sum(c.degraded for c in chosen),
    }
    for call in chosen:
        if call.code != "OK":
            summary[call.code] = summary.get(call.code, 0) + 1
    return summary


def codes(summary: dict[str, float]) -> str:
    """The failure codes of a window summary, as `CODE n, ...` (or `none`)."""
    known = {"calls", "answered_per_s", "p50_ms", "p99_ms", "failed", "degraded"}
    parts = [f"{k} {int(v):,}" for k, v in sorted(summary.items()) if k not in known]
    return ", ".join(parts) or "none"


def failures(calls: list[Call]) -> list[str]:
    """The failed calls as markdown rows `| RPC | code | message | calls |`, most first; the
    message's numbers read as N, so that calls refused by one bound count together."""
    counted = Counter(
        (c.kind, c.code, re.sub(r"\d+(\.\d+)?", "N", c.details)[:120])
        for c in calls
        if c.code != "OK"
    )
    return [
        f"| {kind} | {code} | {message or '-'} | {n:,} |"
        for (kind, code, message), n in counted.most_common()
    ]


def plot_timeline(
    calls: list[Call], memory: MemorySamples, path: str, marks: list[float], bin_s: float
) -> None:
    """Two panels over time: p99 of the answered calls of each RPC per `bin_s` window (and the
    failed calls, if any), and each service's resident memory with the interest service's
    SQLite heap; `marks` draws phase changes."""
    from evorec.plotting import pyplot

    plt = pyplot()
    figure, (latency, rss) = plt.subplots(
        2, 1, figsize=(8, 6), sharex=True, constrained_layout=True
    )
    end = max((c.due_s for c in calls), default=0.0) + bin_s
    starts = [n * bin_s for n in range(int(end / bin_s))]
    for kind in KINDS:
        mine = [c for c in calls if c.kind == kind]
        if not mine:
            continue
        p99 = [window(mine, t, t + bin_s)["p99_ms"] for t in starts]
        latency.plot(starts, p99, label=f"{kind} p99")
    failed = [window(calls, t, t + bin_s)["failed"] for t in starts]
    if any(failed):
        errors = latency.twinx()
        errors.plot(starts, failed, color="black", linestyle=":", label="failed calls")
        errors.set_ylabel(f"failed calls per {bin_s:g} s")
        errors.legend(loc="upper right")
    latency.set_ylabel("p99 of answered calls, ms")
    latency.set_yscale("log")
    latency.legend(loc="upper left")
    for name, samples in memory.mib.items():
        rss.plot(memory.times, samples, label=name)
    rss.plot(
        memory.times, memory.interest_sqlite_mib, color="grey", linestyle="--",
        label="interest: SQLite heap",
    )  # fmt: skip
    rss.set_ylabel("resident memory, MiB")
    rss.set_xlabel("seconds since the load started")
    rss.legend(loc="upper left")
    for mark in marks:
        for axis in (latency, rss):
            axis.axvline(mark, color="grey", linewidth=0.8)
    figure.savefig(path, dpi=100)
    plt.close(figure)
