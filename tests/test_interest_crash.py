"""Durability: an interest service killed with SIGKILL mid-ingest loses no acknowledged event."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from evorec.platform.probes import free_port
from evorec.v1 import common_pb2, interest_pb2_grpc
from evorec.v1 import interest_pb2 as pb
from tests.conftest import ROOT
from tests.test_interest_service import derived_state_is_consistent


def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
    env.update(
        EVOREC_DATA_DIR=str(data_dir),
        EVOREC_INTEREST__PORT=str(port),
        EVOREC_INTEREST__METRICS_PORT="0",
        # No embedding service: events are stored with their topic unresolved, at once.
        EVOREC_EMBEDDING__PORT=str(free_port()),
        EVOREC_CLIENT__RETRY_MAX_ATTEMPTS="1",
        EVOREC_LOG_LEVEL="WARNING",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "evorec", "serve", "interest"], cwd=ROOT, env=env
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
    return process


def ingest_until_killed(port: int, acknowledged: list[str], stop: threading.Event) -> None:
    """Sends batches of 50 events until the server dies; records every acknowledged id."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = interest_pb2_grpc.InterestServiceStub(channel)
        batch = 0
        while not stop.is_set():
            ids = [f"{port}-{batch}-{n}" for n in range(50)]
            events = [
                common_pb2.Event(
                    event_id=i, user_id=f"user{n % 7}", item_id=f"item{n}",
                    type=common_pb2.EVENT_TYPE_VIEW, event_time={"seconds": 1_600_000_000 + batch},
                )
                for n, i in enumerate(ids)
            ]  # fmt: skip
            try:
                stub.IngestEvents(pb.IngestEventsRequest(events=events), timeout=5)
            except grpc.RpcError:
                return
            acknowledged.extend(ids)
            batch += 1


@pytest.mark.slow
def test_every_acknowledged_event_survives_sigkill(tmp_path: Path) -> None:
    rng = random.Random(5)
    acknowledged: list[str] = []
    for _ in range(3):
        port = free_port()
        process = start(tmp_path, port)
        stop = threading.Event()
        sender = threading.Thread(target=ingest_until_killed, args=(port, acknowledged, stop))
        sender.start()
        time.sleep(rng.uniform(0.3, 1.2))
        process.send_signal(signal.SIGKILL)
        process.wait()
        stop.set()
        sender.join(timeout=10)
    assert len(acknowledged) > 0
    restarted = start(tmp_path, free_port())
    try:
        with sqlite3.connect(tmp_path / "interest" / "events.sqlite") as db:
            stored = {row[0] for row in db.execute("SELECT event_id FROM events")}
            assert set(acknowledged) <= stored
            for user in range(7):
                derived_state_is_consistent(db, f"user{user}")
    finally:
        restarted.terminate()
        restarted.wait()
