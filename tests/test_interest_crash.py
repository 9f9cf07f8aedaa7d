"""Durability: an interest service killed with SIGKILL mid-ingest loses no acknowledged event,
and its derived state stays equal to a recomputation from its events. The embedding service
runs, so that events get real topics and the derived state is not trivially empty."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pandas as pd
import pytest

from evorec.platform.probes import free_port, wait_until_serving
from evorec.v1 import common_pb2, interest_pb2_grpc
from evorec.v1 import interest_pb2 as pb
from tests.conftest import ROOT
from tests.test_interest_service import derived_state_is_consistent

USERS = 7


def serve(name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`evorec serve NAME`, returned once it is SERVING."""
    process = subprocess.Popen([sys.executable, "-m", "evorec", "serve", name], cwd=ROOT, env=env)
    target = f"127.0.0.1:{env[f'EVOREC_{name.upper()}__PORT']}"
    wait_until_serving(target, timeout=120, process=process)
    return process


@pytest.fixture
def env(tmp_path: Path, prepared: Path) -> Iterator[dict[str, str]]:
    """An environment whose preprocess and embedding services run (for real topics)."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
    values.update(
        EVOREC_DATA_DIR=str(tmp_path),
        EVOREC_DATASET=str(prepared),
        EVOREC_LOG_LEVEL="WARNING",
    )
    for name in ("preprocess", "embedding", "interest"):
        values[f"EVOREC_{name.upper()}__PORT"] = str(free_port())
        values[f"EVOREC_{name.upper()}__METRICS_PORT"] = "0"
    helpers = [serve("preprocess", values)]
    try:
        helpers.append(serve("embedding", values))
        yield values
    finally:
        for process in helpers:
            process.terminate()
            process.wait()


def ingest_until_killed(
    port: int,
    items: list[str],
    acknowledged: list[str],
    killed: threading.Event,
    unexpected: list[str],
) -> None:
    """Sends batches of 50 events until the server dies; records every acknowledged id. Only
    UNAVAILABLE after the kill counts as the server's death: any other error, or one before
    the kill, goes to `unexpected`."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = interest_pb2_grpc.InterestServiceStub(channel)
        batch = 0
        while not killed.is_set():
            ids = [f"{port}-{batch}-{n}" for n in range(50)]
            events = [
                common_pb2.Event(
                    event_id=i, user_id=f"user{n % USERS}", item_id=items[(batch + n) % len(items)],
                    type=common_pb2.EVENT_TYPE_VIEW, event_time={"seconds": 1_600_000_000 + batch},
                )
                for n, i in enumerate(ids)
            ]  # fmt: skip
            try:
                stub.IngestEvents(pb.IngestEventsRequest(events=events), timeout=10)
            except grpc.RpcError as error:
                code = error.code()  # type: ignore[attr-defined]  # a grpc.Call too
                if code != grpc.StatusCode.UNAVAILABLE or not killed.is_set():
                    unexpected.append(f"{code.name}: {error.details()}")  # type: ignore[attr-defined]
                return
            acknowledged.extend(ids)
            batch += 1


@pytest.mark.slow
def test_every_acknowledged_event_survives_sigkill(env: dict[str, str], prepared: Path) -> None:
    rng = random.Random(5)
    items = pd.read_parquet(prepared / "items.parquet")["item_id"].tolist()
    rng.shuffle(items)
    acknowledged: list[str] = []
    unexpected: list[str] = []
    for _ in range(3):
        env["EVOREC_INTEREST__PORT"] = str(free_port())
        process = serve("interest", env)
        killed = threading.Event()
        sender = threading.Thread(
            target=ingest_until_killed,
            args=(int(env["EVOREC_INTEREST__PORT"]), items, acknowledged, killed, unexpected),
        )
        sender.start()
        time.sleep(rng.uniform(0.3, 1.2))
        killed.set()
        process.send_signal(signal.SIGKILL)
        process.wait()
        sender.join(timeout=15)
        assert not sender.is_alive()
    assert unexpected == []
    assert len(acknowledged) > 0
    env["EVOREC_INTEREST__PORT"] = str(free_port())
    restarted = serve("interest", env)
    try:
        with sqlite3.connect(Path(env["EVOREC_DATA_DIR"]) / "interest" / "events.sqlite") as db:
            stored = {row[0] for row in db.execute("SELECT event_id FROM events")}
            assert set(acknowledged) <= stored
            for user in range(USERS):
                topics = db.execute(
                    "SELECT COUNT(DISTINCT topic_id) FROM events WHERE user_id=?", (f"user{user}",)
                ).fetchone()[0]
                assert topics >= 2, "the derived state is only worth comparing with real topics"
                derived_state_is_consistent(db, f"user{user}")
    finally:
        restarted.terminate()
        restarted.wait()
