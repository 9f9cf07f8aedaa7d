"""The `evorec` command as a user runs it: `up`, `health`, and readable errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from evorec.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, interest_pb2, interest_pb2_grpc
from tests.conftest import ROOT

SERVICE_NAMES = ("preprocess", "embedding", "interest", "ranking")


def evorec(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evorec", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def env(tmp_path: object) -> dict[str, str]:
    """An environment in which the four services use free ports."""
    ports = iter(free_ports(2 * len(SERVICE_NAMES)))
    values = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
    for name in SERVICE_NAMES:
        values[f"EVOREC_{name.upper()}__PORT"] = str(next(ports))
        values[f"EVOREC_{name.upper()}__METRICS_PORT"] = str(next(ports))
    values["EVOREC_DATA_DIR"] = str(tmp_path)
    values["EVOREC_SERVER__GRACE_PERIOD_S"] = "2"
    return values


def test_a_bad_setting_stops_start_up_with_one_line_naming_it(env: dict[str, str]) -> None:
    env["EVOREC_INTEREST__PORT"] = "not-a-port"
    result = evorec("serve", "interest", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid setting EVOREC_INTEREST__PORT: ")
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_an_unknown_service_is_named(env: dict[str, str]) -> None:
    result = evorec("serve", "billing", env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "error: unknown service 'billing'; choose one of preprocess, embedding, interest, ranking\n"
    )


def test_health_without_services_reports_each_unavailable(env: dict[str, str]) -> None:
    result = evorec("health", "--timeout", "0.5", env=env)
    assert result.returncode == 1
    assert result.stdout.count("UNAVAILABLE") == 4


def calls_across_services(env: dict[str, str]) -> None:
    """Calls that make one service call another: each process's clients work."""
    embedding = f"127.0.0.1:{env['EVOREC_EMBEDDING__PORT']}"
    interest = f"127.0.0.1:{env['EVOREC_INTEREST__PORT']}"
    with grpc.insecure_channel(embedding) as channel:  # embedding -> preprocess
        texts = embedding_pb2_grpc.EmbeddingServiceStub(channel).EmbedTexts(
            embedding_pb2.EmbedTextsRequest(texts=["hello"]), timeout=10
        )
        assert len(texts.embeddings) == 1
    with grpc.insecure_channel(interest) as channel:  # interest -> embedding
        event = common_pb2.Event(
            event_id="e1", user_id="u", item_id="i0", type=common_pb2.EVENT_TYPE_VIEW
        )
        ingested = interest_pb2_grpc.InterestServiceStub(channel).IngestEvents(
            interest_pb2.IngestEventsRequest(events=[event]), timeout=10
        )
        assert ingested.summary.accepted_count == 1
        assert ingested.summary.unknown_item_count == 0
    # ranking -> interest, with the model `evorec up` trained
    shown = evorec("recommend", "u", "-k", "5", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "model version 1" in shown.stdout
    assert shown.stdout.count("because you") + shown.stdout.count("often chosen") >= 1
    # u1's training events were replayed on the first start: an answer from history.
    replayed = evorec("recommend", "u1", "-k", "5", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "cold start" not in replayed.stdout
    assert "because you" in replayed.stdout


@pytest.mark.slow
@pytest.mark.timeout(420)  # above the 300 s it waits for the services (it trains a model first)
def test_up_starts_all_four_services_and_ctrl_c_stops_them(env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "evorec", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed = []
        deadline = time.monotonic() + 300  # it simulates data and trains a model first
        while not any("all services up" in line for line in printed):
            assert time.monotonic() < deadline, "".join(printed)
            assert process.poll() is None, "".join(printed)
            printed.append(process.stdout.readline())
        for name in SERVICE_NAMES:
            assert f"127.0.0.1:{env[f'EVOREC_{name.upper()}__PORT']}" in "".join(printed)

        health = evorec("health", env=env)
        assert health.returncode == 0, health.stdout
        assert health.stdout.count("SERVING") == 4
        calls_across_services(env)
        picture = Path(env["EVOREC_DATA_DIR"]) / "u.png"
        profile = evorec("profile", "u", "--out", str(picture), env=env)
        assert profile.returncode == 0, profile.stderr
        assert "interests of u" in profile.stdout
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        after = evorec("health", "--timeout", "0.5", env=env)
        assert after.stdout.count("UNAVAILABLE") == 4
    finally:
        process.kill()
        process.wait()
