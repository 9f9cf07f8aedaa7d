"""The `evorec` command as a user runs it: `up`, `health`, and readable errors."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from evorec.cli import _needs_dataset
from evorec.platform.config import ConfigError, Settings
from evorec.platform.probes import check_health
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


@pytest.mark.parametrize("setting", ["EVOREC_RANKING__PORT", "EVOREC_EMBEDDING__METRICS_PORT"])
def test_up_refuses_port_0_at_once_with_one_line(env: dict[str, str], setting: str) -> None:
    """Its services find each other, and it waits for them, at the configured ports: port 0
    (any free port) would only fail after the start timeout."""
    env[setting] = "0"
    result = evorec("up", "--start-timeout", "20", env=env, timeout=15)
    assert result.returncode == 2
    name, field = setting.removeprefix("EVOREC_").lower().split("__")
    assert result.stderr.startswith(f"error: invalid setting {name}.{field} ({setting}): 0 ")
    assert f"`evorec serve {name}`" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (Path(env["EVOREC_DATA_DIR"]) / "datasets").exists()


def test_up_asks_for_the_model_versions_without_numerical_libraries(tmp_path: Path) -> None:
    """The launcher runs as long as the services: SciPy, scikit-learn and hmmlearn (what
    evorec.encoder.bundle loads) would hold about 110 MB of it for nothing."""
    script = (
        "import sys\n"
        "from evorec.cli import _needs_first_run\n"
        "from evorec.platform.config import Settings\n"
        f"print(_needs_first_run(Settings(data_dir={str(tmp_path)!r})))\n"
        "print(sorted({'scipy', 'sklearn', 'hmmlearn', 'tensorflow'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True\n[]\n"


def test_an_unknown_service_is_named(env: dict[str, str]) -> None:
    result = evorec("serve", "billing", env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "error: unknown service 'billing'; choose one of preprocess, embedding, interest, ranking\n"
    )


def test_a_dataset_of_another_format_is_made_again_or_refused(
    tmp_path: Path, prepared: Path
) -> None:
    """After an upgrade that changes the dataset format, the first run makes the embedded
    default dataset again; a configured one is refused, with what to do."""
    default = tmp_path / "datasets" / "default"
    shutil.copytree(prepared, default)
    embedded = Settings(data_dir=tmp_path, dataset=None)
    assert not _needs_dataset(embedded)
    manifest = json.loads((default / "manifest.json").read_text())
    (default / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    assert _needs_dataset(embedded)
    with pytest.raises(ConfigError, match=r"a dataset of another format at .*evorec data prepare"):
        _needs_dataset(Settings(data_dir=tmp_path, dataset=default))
    with pytest.raises(ConfigError, match="no prepared dataset at"):
        _needs_dataset(Settings(data_dir=tmp_path, dataset=tmp_path / "none"))


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
        # It trained in a child process: the launcher holds no TensorFlow (it held 1.3 GB).
        assert resident_kib(process.pid) < 400_000

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


@pytest.fixture
def ready_env(env: dict[str, str], prepared: Path, model_base: Path) -> dict[str, str]:
    """`env` with a prepared dataset and a trained model: `evorec up` starts at once."""
    return {**env, "EVOREC_DATASET": str(prepared), "EVOREC_SERVING__BASE_PATH": str(model_base)}


def start_up(
    env: dict[str, str], *options: str, ignore_sigint: bool = False
) -> tuple[subprocess.Popen[str], list[str]]:
    """Starts `evorec up` and returns once it says all services are up, with what it printed;
    its stderr (and its services') goes to `stderr.txt` in the data directory.
    `ignore_sigint`: it inherits SIGINT ignored, as a shell's background job does."""

    def ignoring() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    process = subprocess.Popen(
        [sys.executable, "-m", "evorec", "up", *options],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(Path(env["EVOREC_DATA_DIR"]) / "stderr.txt").open("w"),
        text=True,
        preexec_fn=ignoring if ignore_sigint else None,
    )
    assert process.stdout is not None
    printed: list[str] = []
    deadline = time.monotonic() + 120
    while not any("all services up" in line for line in printed):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("evorec up did not start:\n" + "".join(printed))
        printed.append(process.stdout.readline())
    return process, printed


def resident_kib(pid: int) -> int:
    """The resident memory of a process (Linux /proc), in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def service_pids(launcher: int) -> list[int]:
    """The launcher's child processes (Linux /proc)."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text()
    return [int(pid) for pid in children.split()]


def command_line(pid: int) -> bytes:
    """The process's command line, NUL-separated (b"" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def any_child_runs(launcher: int, command: str) -> bool:
    """True once a child of the launcher runs `evorec COMMAND` (exec'd, not just forked)."""
    return any(command.encode() in command_line(pid) for pid in service_pids(launcher))


def service_pid(launcher: int, name: str) -> int:
    for pid in service_pids(launcher):
        if name.encode() in command_line(pid).split(b"\0"):
            return pid
    raise AssertionError(f"no process of {name}")


def ports_in_use(env: dict[str, str]) -> list[str]:
    """The services' gRPC and metrics ports that something still listens on."""
    busy = []
    for name in SERVICE_NAMES:
        for kind in ("PORT", "METRICS_PORT"):
            port = int(env[f"EVOREC_{name.upper()}__{kind}"])
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    busy.append(f"{name} {kind.lower()} {port}")
    return busy


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until `condition` held; fails after `timeout`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.mark.timeout(180)
def test_the_services_exit_when_up_is_killed_with_sigkill(ready_env: dict[str, str]) -> None:
    process, _ = start_up(ready_env)
    pids = service_pids(process.pid)
    assert len(pids) == 4
    try:
        process.kill()
        process.wait()
        took = wait_for(lambda: not ports_in_use(ready_env), timeout=10)
        print(f"ports free {took:.2f} s after SIGKILL of evorec up")
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(240)
def test_up_restarts_a_killed_service_and_a_sigint_stops_it_though_ignored_when_started(
    ready_env: dict[str, str],
) -> None:
    process, _ = start_up(ready_env, ignore_sigint=True)
    try:
        os.kill(service_pid(process.pid, "interest"), signal.SIGKILL)
        target = f"127.0.0.1:{ready_env['EVOREC_INTEREST__PORT']}"
        wait_for(lambda: check_health(target, timeout=0.5) == "SERVING", timeout=60)
        assert len(service_pids(process.pid)) == 4

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert not ports_in_use(ready_env)
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow  # the limit itself is tested quickly in test_supervisor.py
@pytest.mark.timeout(180)
def test_a_service_that_keeps_exiting_stops_up_with_a_message(ready_env: dict[str, str]) -> None:
    process, _ = start_up(ready_env, "--max-restarts", "0")
    try:
        os.kill(service_pid(process.pid, "embedding"), signal.SIGKILL)
        assert process.wait(timeout=30) == 1
        stderr = (Path(ready_env["EVOREC_DATA_DIR"]) / "stderr.txt").read_text()
        assert "error: service embedding exited with status -9 after 0 restarts in a row" in stderr
        assert not ports_in_use(ready_env)
    finally:
        process.kill()
        process.wait()


@pytest.mark.timeout(60)
def test_ctrl_c_during_the_first_run_stops_its_preparation(env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "evorec", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: any_child_runs(process.pid, "prepare-first-run"), timeout=30)
        (preparing,) = service_pids(process.pid)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
        assert not Path(f"/proc/{preparing}").exists()
    finally:
        process.kill()
        process.wait()
