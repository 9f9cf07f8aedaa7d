"""Durability proof of the interest service: `evorec serve interest` killed with SIGKILL at a
random moment under concurrent ingest, round after round; no acknowledged event may be lost
and the derived state (users, topic counts, transitions, topic days) must equal a
recomputation from the stored events.

    .venv/bin/python scripts/durability.py [--rounds 20] [--senders 4] [--seed 0]

A small simulated catalog is prepared and the preprocess and embedding services run as
`evorec serve` processes, so that ingested events get real topics. Each round starts the
interest service on the same SQLite file, `--senders` threads send batches of 50 events
(users drawn from `--users`, items from the catalog, a fifth of the events dated inside the
user's stored history, so that the writer's out-of-order path is exercised too), and after a
random time (uniform in 0.2 s to `--max-kill-after`) the process gets SIGKILL. The batches in
flight at the kill are sent again at the start of the next round, as an at-least-once client
would. After each restart the file is read: acknowledged events missing from it (lost), batches
in flight at the kill stored only in part (a transaction broken in two), and derived tables
that differ from the recomputation (`evorec.interest.derived.recomputed_derived_state`). An
error other than UNAVAILABLE after the kill counts as unexpected. The script exits non-zero
when any of these is not 0.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pandas as pd
from google.protobuf.timestamp_pb2 import Timestamp

from evorec.data.synth import SimulatorConfig
from evorec.interest.derived import recomputed_derived_state, stored_derived_state
from evorec.platform.probes import free_port, wait_until_serving
from evorec.preparation import prepare_synthetic
from evorec.v1 import common_pb2, interest_pb2_grpc
from evorec.v1 import interest_pb2 as pb

BATCH = 50
START_TIME = 1_600_000_000
OUT_OF_ORDER_SHARE = 0.2


@dataclass
class Ledger:
    """What the senders of all rounds were told, shared between their threads."""

    acknowledged: set[str] = field(default_factory=set)
    in_flight: list[list[common_pb2.Event]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def serve(name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`evorec serve NAME`, returned once it reports SERVING."""
    process = subprocess.Popen([sys.executable, "-m", "evorec", "serve", name], env=env)
    target = f"127.0.0.1:{env[f'EVOREC_{name.upper()}__PORT']}"
    wait_until_serving(target, timeout=300, process=process)
    return process


def make_batch(
    rng: random.Random, prefix: str, users: int, items: list[str], clock: list[int]
) -> list[common_pb2.Event]:
    """BATCH events with ids unique to `prefix`; most later than any sent so far, the rest
    dated back into the stored histories."""
    events = []
    for n in range(BATCH):
        clock[0] += 1
        when = clock[0]
        if rng.random() < OUT_OF_ORDER_SHARE:
            when = rng.randint(START_TIME, clock[0])
        events.append(
            common_pb2.Event(
                event_id=f"{prefix}-{n}",
                user_id=f"user{rng.randrange(users)}",
                item_id=rng.choice(items),
                type=common_pb2.EVENT_TYPE_VIEW,
                event_time=Timestamp(seconds=when),
            )
        )
    return events


def send(
    stub: interest_pb2_grpc.InterestServiceStub,
    batch: list[common_pb2.Event],
    ledger: Ledger,
    killed: threading.Event,
) -> bool:
    """Sends one batch; records it as acknowledged, or as in flight when the server died
    (UNAVAILABLE after the kill), or the error as unexpected. True when acknowledged."""
    try:
        stub.IngestEvents(pb.IngestEventsRequest(events=batch), timeout=30)
    except grpc.RpcError as error:
        code = error.code()
        with ledger.lock:
            if code == grpc.StatusCode.UNAVAILABLE and killed.is_set():
                ledger.in_flight.append(batch)
            else:
                ledger.unexpected.append(f"{code.name}: {error.details()}")
        return False
    with ledger.lock:
        ledger.acknowledged.update(e.event_id for e in batch)
    return True


def sender(
    target: str,
    name: str,
    seed: int,
    users: int,
    items: list[str],
    ledger: Ledger,
    killed: threading.Event,
) -> None:
    """Sends batches until one is not acknowledged."""
    rng = random.Random(seed)
    clock = [START_TIME + seed * 10_000_000]
    with grpc.insecure_channel(target) as channel:
        stub = interest_pb2_grpc.InterestServiceStub(channel)
        number = 0
        while send(stub, make_batch(rng, f"{name}-{number}", users, items, clock), ledger, killed):
            number += 1


def check(database: Path, ledger: Ledger, resent: list[list[common_pb2.Event]]) -> dict[str, int]:
    """Reads the file after a restart: lost acknowledged events, batches in flight stored
    only in part, and derived tables whose rows differ from the recomputation."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        stored = {row[0] for row in db.execute("SELECT event_id FROM events")}
        with_topic = db.execute("SELECT COUNT(*) FROM events WHERE topic_id IS NOT NULL")
        (topics,) = with_topic.fetchone()
        kept, recomputed = stored_derived_state(db), recomputed_derived_state(db)
    partial = sum(0 < len({e.event_id for e in b} & stored) < len(b) for b in resent)
    return {
        "stored": len(stored),
        "with_topic": int(topics),
        "lost": len(ledger.acknowledged - stored),
        "partial": partial,
        "derived_rows": sum(len(rows) for rows in kept.values()),
        "derived_differing": sum(len(kept[t] ^ recomputed[t]) for t in kept),
    }


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--senders", type=int, default=4, help="threads ingesting at once")
    parser.add_argument("--users", type=int, default=50, help="users the events belong to")
    parser.add_argument(
        "--max-kill-after", type=float, default=2.0, help="latest kill, seconds into a round"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    rng = random.Random(args.seed)
    ledger = Ledger()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = SimulatorConfig(users=100, items=1_000, topics=12, seed=args.seed)
        prepare_synthetic(work / "dataset", work / "raw", config)
        items = pd.read_parquet(work / "dataset" / "items.parquet")["item_id"].tolist()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
        env.update(
            EVOREC_DATA_DIR=str(work / "data"),
            EVOREC_DATASET=str(work / "dataset"),
            EVOREC_LOG_LEVEL="WARNING",
        )
        for name in ("preprocess", "embedding", "interest"):
            env[f"EVOREC_{name.upper()}__PORT"] = str(free_port())
            env[f"EVOREC_{name.upper()}__METRICS_PORT"] = "0"
        database = work / "data" / "interest" / "events.sqlite"
        target = f"127.0.0.1:{env['EVOREC_INTEREST__PORT']}"
        helpers = [serve("preprocess", env)]
        try:
            helpers.append(serve("embedding", env))
            print(
                f"{args.rounds} rounds; {args.senders} senders of batches of {BATCH} events "
                f"({args.users} users, {len(items):,} items, {OUT_OF_ORDER_SHARE:.0%} dated "
                "into the stored history); SIGKILL at a random moment in each round"
            )
            print(
                "| round | killed after | events acknowledged (all rounds) | batches in flight,"
                " re-sent | restart to SERVING | events stored (with a topic) | lost | stored"
                " in part | derived rows (differing from recomputation) |\n"
                "|---|---|---|---|---|---|---|---|---|",
                flush=True,
            )
            kill_after = 0.0
            for number in range(1, args.rounds + 1):
                started = time.monotonic()
                interest = serve("interest", env)
                restart_s = time.monotonic() - started
                if number > 1:
                    result = check(database, ledger, ledger.in_flight)
                    failures += row(
                        number - 1, kill_after, ledger, ledger.in_flight, restart_s, result
                    )
                resent, ledger.in_flight = ledger.in_flight, []
                killed = threading.Event()
                with grpc.insecure_channel(target) as channel:
                    stub = interest_pb2_grpc.InterestServiceStub(channel)
                    for batch in resent:  # an at-least-once client sends them again
                        send(stub, batch, ledger, killed)
                threads = [
                    threading.Thread(
                        target=sender,
                        args=(target, f"r{number}s{s}", s, args.users, items, ledger, killed),
                    )
                    for s in range(args.senders)
                ]
                for thread in threads:
                    thread.start()
                kill_after = rng.uniform(0.2, args.max_kill_after)
                time.sleep(kill_after)
                killed.set()
                interest.send_signal(signal.SIGKILL)
                interest.wait()
                for thread in threads:
                    thread.join(timeout=60)
                    if thread.is_alive():
                        raise SystemExit("a sender did not stop after the kill")
            started = time.monotonic()
            interest = serve("interest", env)
            restart_s = time.monotonic() - started
            result = check(database, ledger, ledger.in_flight)
            failures += row(args.rounds, kill_after, ledger, ledger.in_flight, restart_s, result)
            interest.terminate()
            interest.wait()
        finally:
            for process in helpers:
                process.terminate()
                process.wait()
    print(
        f"total: {len(ledger.acknowledged):,} events acknowledged over {args.rounds} kills; "
        f"rounds with a loss, a batch stored in part or a derived row differing: {failures}; "
        f"unexpected errors: {len(ledger.unexpected)}"
    )
    for message in ledger.unexpected[:10]:
        print(f"unexpected: {message}")
    return 1 if failures or ledger.unexpected else 0


def row(
    number: int,
    kill_after: float,
    ledger: Ledger,
    in_flight: list[list[common_pb2.Event]],
    restart_s: float,
    result: dict[str, int],
) -> int:
    """Prints one round's row; 1 when the round failed the proof."""
    print(
        f"| {number} | {kill_after:.2f} s | {len(ledger.acknowledged):,} | {len(in_flight)} | "
        f"{restart_s:.1f} s | {result['stored']:,} ({result['with_topic']:,}) | "
        f"{result['lost']} | {result['partial']} | {result['derived_rows']:,} "
        f"({result['derived_differing']}) |",
        flush=True,
    )
    failed = result["lost"] or result["partial"] or result["derived_differing"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
