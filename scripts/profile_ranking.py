"""Where `Recommend`'s time goes under load: a sampling profile of the ranking service (and of
the interest service it calls) while callers keep it saturated, summarized as the share of
samples in each function, and the CPU each process spends per recommendation.

    .venv/bin/python scripts/profile_ranking.py [--seconds 20] [--workers 32] [--work DIR]
        [--users 1000 --items 10000 --events-per-user 200] [--top 25] [--raw DIR]

The setup is scripts/bench_ranking.py's (its helpers are reused): a simulated catalog of 10,000
items and 1,000 users with about 200 events each, a Transformer with text trained for two
epochs and exported, the four services as `evorec serve` processes, every user's events
ingested, then `--workers` callers on one connection asking for k=10. While they do,
`py-spy record` samples the ranking and the interest service (a sampling profiler that reads
a process from outside, so it does not slow the Python it measures the way cProfile would;
installed with the dev extra; attaching needs root or CAP_SYS_PTRACE). `--work DIR` keeps
the prepared dataset and model in DIR and reuses them on the next run (training takes
minutes); the services' data is made afresh.

Printed: CPU milliseconds per recommendation of each process (from /proc, user + system
time over the measured phase: the load generator is this script), then for each profiled
process the functions holding the most samples, by self time (the function was running) and
by total time (the function was on the stack; evorec's own functions only). py-spy samples
every thread; idle threads are left out, so shares are of the time the process was busy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ranking import Services, ingest, saturate

from evorec.data.artifacts import DatasetLayout
from evorec.data.synth import SimulatorConfig
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.model_cli import train_and_export
from evorec.preparation import prepare_synthetic

PROFILED = ("interest", "ranking")
SAMPLE_RATE = 200  # py-spy samples per second
# Seconds py-spy has, after its process is stopped, to write what it sampled.
PROFILE_FLUSH_S = 60.0


def clock_ticks(pid: int) -> int:
    """User + system CPU ticks of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def prepare(work: Path, args: argparse.Namespace) -> Path:
    """The dataset and exported model under `work`, made unless already there."""
    if not (work / "models" / "encoder").exists():
        shutil.rmtree(work / "dataset", ignore_errors=True)
        config = SimulatorConfig(
            users=args.users, items=args.items, topics=20, events_per_user=args.events_per_user
        )
        prepare_synthetic(work / "dataset", work / "raw", config)
        train_and_export(
            DatasetLayout(work / "dataset"),
            EncoderConfig(),
            TrainingConfig(epochs=2),
            work / "models",
            "encoder",
        )
    return work / "dataset"


def py_spy() -> str:
    """The py-spy executable beside this Python (the dev extra installs it), or on PATH."""
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[dev]'")
    return found


def record(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """Starts `py-spy record` on process `pid` for `seconds`; it writes collapsed stacks to
    `output` when done. Attaching needs ptrace rights over the process (root, or
    CAP_SYS_PTRACE)."""
    command = [
        py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
        "--rate", str(SAMPLE_RATE), "--format", "raw", "--nonblocking", "--output", str(output),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(spy: subprocess.Popen[bytes], seconds: float) -> None:
    """Waits for py-spy to finish and write its stacks; exits the script if it failed."""
    try:
        _, error = spy.communicate(timeout=seconds + PROFILE_FLUSH_S)
    except subprocess.TimeoutExpired:
        spy.kill()
        raise SystemExit("py-spy did not finish") from None
    if spy.returncode != 0:
        raise SystemExit(f"py-spy failed ({spy.returncode}): {error.decode(errors='replace')}")


def frame_name(frame: str) -> str:
    """`function (file.py:line)` -> `function (file.py)`: lines of one function merged."""
    function, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(path).parts
    short = "/".join(parts[parts.index("evorec") :]) if "evorec" in parts else Path(path).name
    return f"{function} ({short})"


def summarize(raw: Path, top: int) -> str:
    """Self and total shares of the sampled functions in py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    if samples == 0:
        return "  (no samples)"
    lines = [f"  {samples:,} samples of a busy thread"]
    # Total time is listed for evorec's own functions below the command line's entry points
    # (those hold every sample of the event loop and say nothing).
    ours = Counter(
        {
            name: count
            for name, count in total.items()
            if "(evorec/" in name and "(evorec/cli.py)" not in name and "__main__" not in name
        }
    )
    for title, counter in (("self", own), ("total, evorec's functions", ours)):
        lines.append(f"  | {title} % | function |\n  |---|---|")
        for name, count in counter.most_common(top):
            lines.append(f"  | {100 * count / samples:5.1f} | {name} |")
    return "\n".join(lines)


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="profiled load phase")
    parser.add_argument("--workers", type=int, default=32, help="callers kept busy")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--events-per-user", type=int, default=200)
    parser.add_argument("--work", type=Path, help="keep (and reuse) the dataset and model here")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's collapsed stacks here")
    parser.add_argument("--top", type=int, default=25, help="functions listed per table")
    parser.add_argument("--call-timeout", type=float, default=10.0, help="seconds per call")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = options(argv)
    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        dataset = prepare(work, args)
        users = sorted(pd.read_parquet(DatasetLayout(dataset).events)["user_id"].unique())
        data_dir = Path(tmp) / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
        env.update(
            EVOREC_DATA_DIR=str(data_dir),
            EVOREC_DATASET=str(dataset),
            EVOREC_SERVING__BASE_PATH=str(work / "models"),
            EVOREC_LOG_LEVEL="WARNING",
        )
        services = Services(env)
        raws = {name: Path(tmp) / f"{name}.txt" for name in PROFILED}
        try:
            for name in ("preprocess", "embedding", "interest", "ranking"):
                services.start(name)
            asyncio.run(ingest(services.target("interest"), DatasetLayout(dataset)))
            load = (services.target("ranking"), users)
            asyncio.run(saturate(*load, 3, args.workers, args.call_timeout))  # warm up
            pids = {name: process.pid for name, process in services.processes.items()}
            pids["load generator"] = os.getpid()
            spies = {name: record(pids[name], args.seconds, raws[name]) for name in PROFILED}
            before = {name: clock_ticks(pid) for name, pid in pids.items()}
            started = time.perf_counter()
            result = asyncio.run(saturate(*load, args.seconds, args.workers, args.call_timeout))
            elapsed = time.perf_counter() - started
            spent = {name: clock_ticks(pid) - before[name] for name, pid in pids.items()}
            for spy in spies.values():
                wait_for(spy, args.seconds)
        finally:
            services.stop_all()
        answered = result["per_s"] * elapsed
        tick = os.sysconf("SC_CLK_TCK")
        print(
            f"{args.workers} callers for {args.seconds:.0f} s: {result['per_s']:,.0f} "
            f"recommendations/s (p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms; "
            f"{result['failed']} failed, {result['degraded']} degraded)"
        )
        print("\nCPU per recommendation, by process (user + system):")
        print("| process | CPU ms per recommendation | cores busy |\n|---|---|---|")
        for name, ticks in sorted(spent.items(), key=lambda item: -item[1]):
            seconds = ticks / tick
            print(f"| {name} | {1000 * seconds / answered:.2f} | {seconds / elapsed:.2f} |")
        total = sum(spent.values()) / tick
        print(f"| all | {1000 * total / answered:.2f} | {total / elapsed:.2f} |")
        for name in PROFILED:
            print(f"\n{name} service, py-spy samples during the measured load:")
            print(summarize(raws[name], args.top))
            if args.raw is not None:
                args.raw.mkdir(parents=True, exist_ok=True)
                shutil.copy(raws[name], args.raw / f"{name}.txt")


if __name__ == "__main__":
    main()
