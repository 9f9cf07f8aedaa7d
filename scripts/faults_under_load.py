"""Faults under load: a steady open-loop `Recommend` load while the embedding service, the
interest service and the model server are each killed (SIGKILL, then started again on the
same port) and each paused (SIGSTOP, then SIGCONT). Every call must answer (failed 0); the
answers may degrade meanwhile, and should be full again soon after the service is back.

    .venv/bin/python scripts/faults_under_load.py [--rate 100] [--deadline 1.0] [--down 5]
        [--after 15] [--faults all] [--users 200 --items 1000 --events-per-user 50]

A small simulated catalog is prepared, a small transformer with text is trained and
exported, the four services run as `evorec serve` processes and the users' events are
ingested. The load comes from this process over loopback: `--rate` calls a second whatever
earlier ones do (no coordinated omission), k=10, users drawn at random, each with a deadline
of `--deadline` seconds. Faults run one after another, `--settle` seconds apart:

- embedding-kill / embedding-pause, interest-kill / interest-pause: ranking with the model
  in process (the default backend);
- model-kill / model-pause: ranking on the TF Serving path, against tests/prediction_service.py
  (the PredictionService stand-in, over the same SavedModel, in its own process; the TF
  Serving binary cannot be installed here). With the model in process the model server is the
  ranking process itself, so it has no fault of its own to inject.

Each fault keeps the service down (or stopped) for `--down` seconds; it is "back" once the
restarted process reports SERVING (or once SIGCONT is sent), and the load runs `--after`
seconds more. A row counts the calls sent from the fault to the end of that window: failed
(any status but OK, deadlines included), degraded (`RecommendResponse.degraded_sources` not
empty; which sources), the p99 latency, and the time to full answers: from "back" to the last
degraded or failed call sent in the window ("at once" when none came after it, "not within"
when the window ended on one). The script exits non-zero when any call failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pandas as pd

from evorec.data.artifacts import DatasetLayout
from evorec.data.synth import SimulatorConfig
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.model_cli import train_and_export
from evorec.platform.probes import free_port, wait_until_serving
from evorec.preparation import prepare_synthetic
from evorec.v1 import ranking_pb2, ranking_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ranking import STAND_IN, ingest, wait_until_answering

ROOT = Path(__file__).resolve().parent.parent
FAULTS = (
    "embedding-kill",
    "embedding-pause",
    "interest-kill",
    "interest-pause",
    "model-kill",
    "model-pause",
)


@dataclass
class Call:
    """One Recommend of the load: when it was sent and how it ended."""

    sent: float
    seconds: float
    code: str  # "OK" or the status name
    degraded: tuple[int, ...] = ()

    @property
    def full(self) -> bool:
        return self.code == "OK" and not self.degraded


@dataclass
class Window:
    """One fault: when it began, when the service was back, when its window ended."""

    fault: str
    began: float
    back: float = 0.0
    ended: float = 0.0


@dataclass
class Services:
    """The services as processes on fixed ports, so that a killed one restarts on its port."""

    env: dict[str, str]
    work: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def target(self, name: str) -> str:
        return f"127.0.0.1:{self.env[f'EVOREC_{name.upper()}__PORT']}"

    def start(self, name: str) -> None:
        """Starts `name` (a service, or "model": the stand-in) and waits until it serves."""
        if name == "model":
            port = self.env["EVOREC_SERVING__TF_SERVING_TARGET"].rsplit(":", 1)[1]
            command = [sys.executable, "-c", STAND_IN, str(self.work / "models"), port]
            target = f"127.0.0.1:{port}"
        else:
            command = [sys.executable, "-m", "evorec", "serve", name]
            target = self.target(name)
        self.processes[name] = process = subprocess.Popen(command, env=self.env, cwd=ROOT)
        # The stand-in has no health service: it is up once its channel connects.
        if name == "model":
            wait_until_answering(target, process, 300)
        else:
            wait_until_serving(target, process=process, timeout=300)

    def signal(self, name: str, number: signal.Signals) -> None:
        self.processes[name].send_signal(number)
        if number == signal.SIGKILL:
            self.processes[name].wait()

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
        process.terminate()
        process.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name)


class Load:
    """Open-loop Recommend calls at `rate` per second until stopped."""

    def __init__(self, target: str, users: list[str], rate: float, deadline: float) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.stub = ranking_pb2_grpc.RankingServiceStub(self.channel)
        self.users = users
        self.rate = rate
        self.deadline = deadline
        self.calls: list[Call] = []
        self.stopped = asyncio.Event()

    async def one(self, sent: float) -> None:
        request = ranking_pb2.RecommendRequest(user_id=random.choice(self.users), k=10)
        try:
            response = await self.stub.Recommend(request, timeout=self.deadline)
        except grpc.aio.AioRpcError as error:
            self.calls.append(Call(sent, time.monotonic() - sent, error.code().name))
            return
        degraded = tuple(response.degraded_sources)
        self.calls.append(Call(sent, time.monotonic() - sent, "OK", degraded))

    async def run(self) -> None:
        tasks = []
        start = time.monotonic()
        number = 0
        while not self.stopped.is_set():
            scheduled = start + number / self.rate
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            tasks.append(asyncio.create_task(self.one(time.monotonic())))
            number += 1
        await asyncio.gather(*tasks)
        await self.channel.close(None)


async def inject(
    services: Services, fault: str, down: float, after: float, settle: float
) -> Window:
    """Runs one fault (`<service>-kill` or `<service>-pause`) and the window after it."""
    name, kind = fault.rsplit("-", 1)
    await asyncio.sleep(settle)
    window = Window(fault, time.monotonic())
    if kind == "kill":
        await asyncio.to_thread(services.signal, name, signal.SIGKILL)
        await asyncio.sleep(down)
        await asyncio.to_thread(services.start, name)
    else:
        await asyncio.to_thread(services.signal, name, signal.SIGSTOP)
        await asyncio.sleep(down)
        await asyncio.to_thread(services.signal, name, signal.SIGCONT)
    window.back = time.monotonic()
    await asyncio.sleep(after)
    window.ended = time.monotonic()
    return window


async def under_load(
    services: Services, faults: list[str], args: argparse.Namespace, users: list[str]
) -> tuple[list[Window], list[Call]]:
    load = Load(services.target("ranking"), users, args.rate, args.deadline)
    running = asyncio.create_task(load.run())
    windows = []
    try:
        for fault in faults:
            windows.append(await inject(services, fault, args.down, args.after, args.settle))
    finally:
        load.stopped.set()
        await running
    return windows, load.calls


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def spelled(counts: Counter[str]) -> str:
    """` (A 3, B 1)`, or nothing when `counts` is empty."""
    return f" ({', '.join(f'{k} {n}' for k, n in counts.items())})" if counts else ""


def row(window: Window, calls: list[Call], after: float) -> tuple[str, int]:
    """The window's Markdown row, and its failed calls."""
    inside = sorted(
        (c for c in calls if window.began <= c.sent < window.ended), key=lambda c: c.sent
    )
    failed = [c for c in inside if c.code != "OK"]
    degraded = [c for c in inside if c.code == "OK" and c.degraded]
    codes = Counter(c.code for c in failed)
    name = ranking_pb2.CandidateSource.Name
    sources = Counter(name(s) for c in degraded for s in c.degraded)  # type: ignore[arg-type]
    last = max((c.sent for c in inside if not c.full), default=None)
    if window.back == window.ended:  # no fault: nothing to come back from
        recovery = "-"
    elif last is None or last < window.back:
        recovery = "at once"
    elif inside and not inside[-1].full:
        recovery = f"not within {after:.0f} s"
    else:
        recovery = f"{last - window.back:.1f} s"
    failures = f"{len(failed)}{spelled(codes)}"
    if failed:  # when, from the moment the service was back (negative: while it was down)
        span = [c.sent - window.back for c in failed]
        failures += f", sent at {min(span):+.1f} to {max(span):+.1f} s"
    degradations = f"{len(degraded):,}{spelled(sources)}"
    p99 = percentile([c.seconds for c in inside], 0.99) * 1000
    text = (
        f"| {window.fault} | {window.back - window.began:.1f} s | {len(inside):,} | {failures} | "
        f"{degradations} | {p99:.0f} ms | {recovery} |"
    )
    return text, len(failed)


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="Recommend calls per second")
    parser.add_argument("--deadline", type=float, default=1.0, help="seconds per call")
    parser.add_argument("--down", type=float, default=5.0, help="seconds a service is down")
    parser.add_argument("--after", type=float, default=15.0, help="seconds watched after")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between faults")
    parser.add_argument(
        "--faults", default="all", help=f"comma-separated, of {', '.join(FAULTS)}; or all"
    )
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--events-per-user", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the model")
    parser.add_argument(
        "--log-level", default="ERROR", help="the services' (WARNING: each degraded answer's cause)"
    )
    args = parser.parse_args(argv)
    args.faults = list(FAULTS) if args.faults == "all" else args.faults.split(",")
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    random.seed(0)
    rows: list[tuple[str, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = SimulatorConfig(
            users=args.users, items=args.items, topics=12, events_per_user=args.events_per_user
        )
        prepare_synthetic(work / "dataset", work / "raw", config)
        layout = DatasetLayout(work / "dataset")
        train_and_export(
            layout,
            EncoderConfig(dim=32, max_len=50, blocks=1),
            TrainingConfig(epochs=args.epochs),
            work / "models",
            "encoder",
        )
        users = sorted(pd.read_parquet(layout.events, columns=["user_id"])["user_id"].unique())
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
        env.update(
            EVOREC_DATA_DIR=str(work / "data"),
            EVOREC_DATASET=str(work / "dataset"),
            EVOREC_SERVING__BASE_PATH=str(work / "models"),
            EVOREC_LOG_LEVEL=args.log_level,
            EVOREC_LOG_FORMAT="text",
        )
        for name in ("preprocess", "embedding", "interest", "ranking"):
            env[f"EVOREC_{name.upper()}__PORT"] = str(free_port())
            env[f"EVOREC_{name.upper()}__METRICS_PORT"] = "0"
        services = Services(env, work)
        print(
            f"machine: {os.cpu_count()} cores; {args.items:,} items, {len(users):,} users with "
            f"{args.events_per_user} events each; Recommend k=10 at {args.rate:.0f}/s offered, "
            f"deadline {args.deadline:.1f} s; each service down or stopped {args.down:.0f} s, "
            f"watched {args.after:.0f} s after it is back"
        )
        print(
            "| fault | down, to back | calls | failed | degraded (sources) | p99 | time to full"
            " answers after back |\n|---|---|---|---|---|---|---|",
            flush=True,
        )
        try:
            for name in ("preprocess", "embedding", "interest"):
                services.start(name)
            asyncio.run(ingest(services.target("interest"), layout))
            in_process = [f for f in args.faults if not f.startswith("model-")]
            on_tf_serving = [f for f in args.faults if f.startswith("model-")]
            if in_process:
                services.start("ranking")
                rows += report(*asyncio.run(under_load(services, in_process, args, users)), args)
                services.stop("ranking")
            if on_tf_serving:
                services.env.update(
                    EVOREC_SERVING__BACKEND="tf_serving",
                    EVOREC_SERVING__TF_SERVING_TARGET=f"127.0.0.1:{free_port()}",
                )
                services.start("model")
                services.start("ranking")
                rows += report(*asyncio.run(under_load(services, on_tf_serving, args, users)), args)
        finally:
            services.stop_all()
    failed = sum(n for _, n in rows)
    print(f"total: {failed} failed calls over {len(rows)} faults")
    return 1 if failed else 0


def report(
    windows: list[Window], calls: list[Call], args: argparse.Namespace
) -> list[tuple[str, int]]:
    """Prints the rows of the windows (a baseline before the first) and returns them."""
    rows = []
    if windows:
        first = windows[0].began
        baseline = Window("none (before the first fault)", first - args.settle, first, first)
        rows.append(row(baseline, calls, args.after))
    rows += [row(window, calls, args.after) for window in windows]
    for text, _ in rows:
        print(text, flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
