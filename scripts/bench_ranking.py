"""Benchmarks of the ranking service: Recommend throughput at saturation, p50/p99 latency at a
fixed offered load, the bare model beside it, the latency the TF Serving path adds, and the
start-up time of `evorec up`.

    .venv/bin/python scripts/bench_ranking.py [--seconds 20] [--rate 200 400] [--workers 32]
        [--ranking-processes 1] [--users 1000 --items 10000 --events-per-user 200]

A simulated catalog of 10,000 items and 1,000 users with 200 events each is prepared (smaller
with --users, --items, --events-per-user: the test suite's smoke run), a transformer with text
(d=64, 2 blocks, max length 200: the reported architecture; two epochs, since speed, not
accuracy, is measured) is trained and exported, the users' events are
ingested, and the four services run as `evorec serve` processes; the load comes from this
process over loopback (k=10, users drawn at random), so client and services share the
machine's cores. --ranking-processes N runs N ranking processes, each on a port of its own
(replicas, as a service's pods are), and the load's channel sends its calls to them in turn
(gRPC's round_robin policy, as a client balancing over pods does); the one-call-at-a-time
and TF Serving figures use one process only. The TF Serving path is measured against
tests/prediction_service.py (the PredictionService stand-in of the tests, over the same
SavedModel, in its own process): the TF Serving binary cannot be installed here.

Every call has a deadline (--call-timeout); a call that fails or times out is counted and
printed beside the figure it belongs to. The start-up of `evorec up` has a deadline too
(--up-deadline): the script exits non-zero, printing no time, when `evorec up` exits early or
its four services do not all report SERVING by then.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
from google.protobuf.timestamp_pb2 import Timestamp

from evorec.data.artifacts import DatasetLayout
from evorec.data.synth import SimulatorConfig
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.model_cli import train_and_export
from evorec.platform.probes import free_port, wait_until_serving
from evorec.preparation import prepare_synthetic
from evorec.v1 import common_pb2, interest_pb2, interest_pb2_grpc, ranking_pb2, ranking_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
STAND_IN = """
import asyncio, sys
from pathlib import Path
from tests.prediction_service import start_prediction_service

async def main():
    stand_in = await start_prediction_service(Path(sys.argv[1]), port=int(sys.argv[2]))
    await stand_in.server.wait_for_termination()

asyncio.run(main())
"""


def wait_until_answering(target: str, process: subprocess.Popen[bytes], deadline_s: float) -> None:
    """Returns once a gRPC server at `target` accepts a connection; exits the script when
    `process` (the server's) ends first or `deadline_s` passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server for {target} exited with status {process.returncode}")
        with grpc.insecure_channel(target) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=1.0)
                return
            except grpc.FutureTimeoutError:
                continue
    raise SystemExit(f"nothing answered at {target} within {deadline_s:.0f} s")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Services:
    """The four services as `evorec serve` processes on free ports."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = dict(env)
        self.replicas: dict[str, list[str]] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        self.env[f"EVOREC_{name.upper()}__PORT"] = str(free_port())
        self.env[f"EVOREC_{name.upper()}__METRICS_PORT"] = str(free_port())
        process = subprocess.Popen([sys.executable, "-m", "evorec", "serve", name], env=self.env)
        self.processes[name] = process
        wait_until_serving(self.target(name), process=process, timeout=300)

    def add_replica(self, name: str) -> None:
        """Another process of `name`, the same settings on a port of its own (a replica, as
        another pod would be); returns once it reports SERVING."""
        port = free_port()
        env = {
            **self.env,
            f"EVOREC_{name.upper()}__PORT": str(port),
            f"EVOREC_{name.upper()}__METRICS_PORT": "0",
        }
        process = subprocess.Popen([sys.executable, "-m", "evorec", "serve", name], env=env)
        self.processes[f"{name}-{len(self.processes)}"] = process
        self.replicas.setdefault(name, []).append(f"127.0.0.1:{port}")
        wait_until_serving(self.replicas[name][-1], process=process, timeout=300)

    def pids(self, name: str) -> list[int]:
        """The process ids of `name` and its replicas."""
        return [p.pid for key, p in self.processes.items() if self._of(key, name)]

    @staticmethod
    def _of(key: str, name: str) -> bool:
        """Whether the process kept under `key` is `name` or one of its replicas."""
        return key == name or key.startswith(f"{name}-")

    def balanced_target(self, name: str) -> str:
        """A target naming `name` and its replicas: a `balanced_channel` to it sends each
        call to the next of them, as a client balancing over a service's pods does."""
        return "ipv4:" + ",".join([self.target(name), *self.replicas.get(name, [])])

    def stop(self, name: str) -> None:
        for key in [k for k in self.processes if self._of(k, name)]:
            process = self.processes.pop(key)
            process.terminate()
            process.wait()
        self.replicas.pop(name, None)

    def target(self, name: str) -> str:
        return f"127.0.0.1:{self.env[f'EVOREC_{name.upper()}__PORT']}"

    def metrics_url(self, name: str) -> str:
        """The Prometheus page of the first process of `name`."""
        return f"http://127.0.0.1:{self.env[f'EVOREC_{name.upper()}__METRICS_PORT']}/metrics"

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name)


async def ingest(target: str, layout: DatasetLayout) -> None:
    events = pd.read_parquet(layout.events, columns=["user_id", "item_id", "timestamp"])
    messages = [
        common_pb2.Event(
            event_id=f"e{n}", user_id=user, item_id=item, type=common_pb2.EVENT_TYPE_VIEW,
            event_time=Timestamp(seconds=int(when)),
        )
        for n, (user, item, when) in enumerate(events.itertuples(index=False))
    ]  # fmt: skip
    async with grpc.aio.insecure_channel(target) as channel:
        stub = interest_pb2_grpc.InterestServiceStub(channel)
        for start in range(0, len(messages), 1_000):
            batch = messages[start : start + 1_000]
            await stub.IngestEvents(interest_pb2.IngestEventsRequest(events=batch))


def balanced_channel(target: str) -> grpc.aio.Channel:
    """A channel sending its calls round robin over the processes `target` names
    (`Services.balanced_target`; one process: all to it)."""
    return grpc.aio.insecure_channel(target, options=[("grpc.lb_policy_name", "round_robin")])


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process `pid` has used so far, in seconds (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def saturate(
    target: str,
    users: list[str],
    seconds: float,
    workers: int,
    call_timeout: float,
) -> dict[str, float]:
    """`workers` callers back to back: throughput and latency at saturation. Only complete,
    undegraded answers count; a call that fails (its deadline included) or comes back short
    or degraded is counted apart, so that a stuck call cannot stall the run."""
    latencies: list[float] = []
    failed = 0
    degraded = 0
    end = time.perf_counter() + seconds
    channel = balanced_channel(target)
    stub = ranking_pb2_grpc.RankingServiceStub(channel)
    try:

        async def worker() -> None:
            nonlocal failed, degraded
            while time.perf_counter() < end:
                request = ranking_pb2.RecommendRequest(user_id=random.choice(users), k=10)
                started = time.perf_counter()
                try:
                    response = await stub.Recommend(request, timeout=call_timeout)
                except grpc.aio.AioRpcError:
                    failed += 1
                    continue
                if len(response.recommendations) < 10 or response.degraded_sources:
                    degraded += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - started
    finally:
        await channel.close(None)
    return {
        "per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else float("nan"),
        "failed": failed,
        "degraded": degraded,
        "sent": len(latencies) + failed + degraded,
    }


async def offered(
    target: str,
    users: list[str],
    seconds: float,
    rate: float,
    call_timeout: float,
) -> dict[str, float]:
    """Open-loop load: a request every 1/rate s whether or not earlier ones have answered, so
    that a slow answer cannot slow the load down (no coordinated omission)."""
    latencies: list[float] = []
    failed: list[float] = []
    degraded: list[float] = []
    channel = balanced_channel(target)
    stub = ranking_pb2_grpc.RankingServiceStub(channel)
    try:

        async def one(scheduled: float) -> None:
            request = ranking_pb2.RecommendRequest(user_id=random.choice(users), k=10)
            try:
                response = await stub.Recommend(request, timeout=call_timeout)
            except grpc.aio.AioRpcError:
                failed.append(scheduled)
                return
            latencies.append(time.perf_counter() - scheduled)
            if response.degraded_sources:
                degraded.append(scheduled)

        start = time.perf_counter()
        tasks = []
        for n in range(int(seconds * rate)):
            scheduled = start + n / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    finally:
        await channel.close(None)
    return {
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else float("nan"),
        "failed": len(failed),
        "degraded": len(degraded),
        "sent": len(tasks),
    }


def bare_model(version_dir: Path, history: int) -> dict[str, float]:
    """The SavedModel alone: users/s in batches of 256 and one user's latency, `history`-item
    histories, scores over every item (user vectors times the item table)."""
    import tensorflow as tf

    model = tf.saved_model.load(str(version_dir))
    signature = model.signatures["serving_default"]
    table = np.load(version_dir / "assets.extra" / "evorec" / "item_table.npy")
    rng = np.random.default_rng(0)
    n_items = table.shape[0] - 1
    batch = rng.integers(1, n_items + 1, size=(256, history)).astype(np.int32)
    length = np.full(256, history, np.int32)

    def score(rows: int) -> None:
        vectors = signature(history=tf.constant(batch[:rows]), length=tf.constant(length[:rows]))
        np.asarray(vectors["user_vector"]) @ table.T

    for rows in (256, 1):
        score(rows)
    started = time.perf_counter()
    for _ in range(10):
        score(256)
    per_s = 2_560 / (time.perf_counter() - started)
    single = []
    for _ in range(200):
        started = time.perf_counter()
        score(1)
        single.append(time.perf_counter() - started)
    return {"users_per_s": per_s, "one_user_ms": statistics.median(single) * 1000}


async def sequential_p50(
    target: str, users: list[str], call_timeout: float, count: int = 300
) -> float:
    """The median latency of `count` calls made one at a time on one connection; every call
    must answer in time and undegraded, or the run fails."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        latencies = []
        for _ in range(count):
            request = ranking_pb2.RecommendRequest(user_id=random.choice(users), k=10)
            started = time.perf_counter()
            response = await stub.Recommend(request, timeout=call_timeout)
            latencies.append(time.perf_counter() - started)
            if not response.model_version or response.degraded_sources:
                raise SystemExit(f"a one-at-a-time call was not answered by the model: {response}")
    return statistics.median(latencies) * 1000


def up_start_time(env: dict[str, str], deadline_s: float, log: Path) -> float:
    """Seconds from launching `evorec up` (dataset and model present) to all four services
    reporting SERVING on their health checks. Exits the script, non-zero and with no time,
    when `evorec up` exits first or the deadline passes; its output is in `log`."""
    up_env = {**env, "EVOREC_LOG_LEVEL": "WARNING"}
    targets = []
    for name in ("preprocess", "embedding", "interest", "ranking"):
        up_env[f"EVOREC_{name.upper()}__PORT"] = str(free_port())
        targets.append(f"127.0.0.1:{up_env[f'EVOREC_{name.upper()}__PORT']}")
    started = time.perf_counter()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "evorec", "up"], env=up_env, stdout=output, stderr=output
        )
    try:
        for target in targets:
            left = deadline_s - (time.perf_counter() - started)
            wait_until_serving(target, timeout=max(0.0, left), process=process)
        elapsed = time.perf_counter() - started
        if process.poll() is not None:
            raise RuntimeError(f"evorec up exited with status {process.returncode}")
    except RuntimeError as error:
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"`evorec up` start-up failed: {error}\n{tail}") from error
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return elapsed


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[200.0, 400.0],
        help="offered loads (requests/s), one open-loop phase each",
    )
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument(
        "--ranking-processes",
        type=int,
        default=1,
        help="ranking processes, each on its own port; the load goes round robin over them",
    )
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--events-per-user", type=int, default=200)
    parser.add_argument("--call-timeout", type=float, default=10.0, help="seconds per call")
    parser.add_argument(
        "--up-deadline", type=float, default=300.0, help="seconds `evorec up` has to start"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = options(argv)
    timeout = args.call_timeout
    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = SimulatorConfig(
            users=args.users, items=args.items, topics=20, events_per_user=args.events_per_user
        )
        prepare_synthetic(work / "dataset", work / "raw", config)
        layout = DatasetLayout(work / "dataset")
        version_dir = train_and_export(
            layout, EncoderConfig(), TrainingConfig(epochs=2), work / "models", "encoder"
        )
        user_ids = pd.read_parquet(layout.events, columns=["user_id"])["user_id"]
        users = sorted(user_ids.unique())
        events_per_user = len(user_ids) / len(users)
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.items:,} items, "
            f"{len(users):,} users with {events_per_user:.0f} events on average; k=10; "
            f"one channel from this process, round robin over {args.ranking_processes} ranking"
            " process(es)"
        )
        print("| measure | value |\n|---|---|", flush=True)
        bare = bare_model(version_dir, args.events_per_user)
        print(
            f"| bare model, batches of 256: users/s; one user | {bare['users_per_s']:,.0f} "
            f"users/s; {bare['one_user_ms']:.1f} ms |",
            flush=True,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
        env.update(
            EVOREC_DATA_DIR=str(work / "data"),
            EVOREC_DATASET=str(work / "dataset"),
            EVOREC_SERVING__BASE_PATH=str(work / "models"),
            EVOREC_LOG_LEVEL="WARNING",
        )
        services = Services(env)
        stand_in = None
        try:
            for name in ("preprocess", "embedding", "interest", "ranking"):
                services.start(name)
            for _ in range(1, args.ranking_processes):
                services.add_replica("ranking")
            asyncio.run(ingest(services.target("interest"), layout))
            ranking = services.target("ranking")
            load = (services.balanced_target("ranking"), users)
            asyncio.run(saturate(*load, 3, args.workers, timeout))  # warm up
            pids = services.pids("ranking")
            cpu_before, began = [cpu_seconds(pid) for pid in pids], time.perf_counter()
            saturated = asyncio.run(saturate(*load, args.seconds, args.workers, timeout))
            took = time.perf_counter() - began
            busy = [(cpu_seconds(pid) - b) / took for pid, b in zip(pids, cpu_before, strict=True)]
            print(
                f"| Recommend at saturation ({args.workers} callers over one channel, "
                f"{args.ranking_processes} ranking process(es)) | "
                f"{saturated['per_s']:,.0f} recommendations/s (p50 {saturated['p50_ms']:.1f} ms, "
                f"p99 {saturated['p99_ms']:.1f} ms; {saturated['failed']} of "
                f"{saturated['sent']} failed, {saturated['degraded']} degraded) |",
                flush=True,
            )
            print(
                "| cores each ranking process kept busy at saturation (user + system) | "
                + ", ".join(f"{cores:.2f}" for cores in busy)
                + " |",
                flush=True,
            )
            for rate in args.rate:
                steady = asyncio.run(offered(*load, args.seconds, rate, timeout))
                print(
                    f"| Recommend at {rate:.0f}/s offered over one channel "
                    f"({args.ranking_processes} ranking process(es)): p50 / p99 | "
                    f"{steady['p50_ms']:.1f} / {steady['p99_ms']:.1f} ms ({steady['failed']} of "
                    f"{steady['sent']} failed, {steady['degraded']} degraded) |",
                    flush=True,
                )
            print(
                f"| bare model / Recommend at saturation | {bare['users_per_s']:,.0f} / "
                f"{saturated['per_s']:,.0f} = {bare['users_per_s'] / saturated['per_s']:.1f} |",
                flush=True,
            )
            in_process = asyncio.run(sequential_p50(ranking, users, timeout))
            services.stop("ranking")
            port = free_port()
            stand_in = subprocess.Popen(
                [sys.executable, "-c", STAND_IN, str(work / "models"), str(port)], cwd=ROOT
            )
            # Ranking serves its fallback sources while TF Serving cannot be reached; the
            # figure is of the encoder's path, so ranking starts once the stand-in answers.
            wait_until_answering(f"127.0.0.1:{port}", stand_in, args.up_deadline)
            services.env.update(
                EVOREC_SERVING__BACKEND="tf_serving",
                EVOREC_SERVING__TF_SERVING_TARGET=f"127.0.0.1:{port}",
            )
            services.start("ranking")
            via_tf_serving = asyncio.run(sequential_p50(services.target("ranking"), users, timeout))
            print(
                "| one call at a time on one connection, p50 of each of two separate runs: "
                f"in-process / TF Serving stand-in | {in_process:.1f} / {via_tf_serving:.1f} ms |",
                flush=True,
            )
        finally:
            services.stop_all()
            if stand_in is not None:
                stand_in.terminate()
                stand_in.wait()
        start_up = up_start_time(env, args.up_deadline, work / "up.log")
        print(
            "| `evorec up` start-up, dataset and model present, to all four SERVING | "
            f"{start_up:.1f} s |"
        )


if __name__ == "__main__":
    main()
