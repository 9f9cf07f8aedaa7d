"""`evorec up`'s supervision on its own, with stand-in children: restarts in a row and their
limit, and the watch on the parent where there is no parent-death signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evorec import supervisor
from tests.conftest import ROOT


def sleeper(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A child that runs until it is killed, in place of `evorec serve`."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def kill_and_reap(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()


def check_until_restarted(services: supervisor.Supervisor, name: str) -> None:
    before = services.processes[name]
    deadline = time.monotonic() + 5
    while services.processes[name] is before:
        assert time.monotonic() < deadline
        services.check()
        time.sleep(0.02)


def test_a_service_is_restarted_until_its_restarts_in_a_row_run_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor, "spawn", sleeper)
    monkeypatch.setattr(supervisor, "STABLE_AFTER_S", 1.5)
    said: list[str] = []
    services = supervisor.Supervisor({}, supervisor.RestartPolicy(2, 0.05), said.append)
    services.start("interest")
    try:
        for _ in range(2):
            kill_and_reap(services.processes["interest"])
            check_until_restarted(services, "interest")
        time.sleep(1.6)  # up long enough: the next exit starts a new row
        for _ in range(2):
            kill_and_reap(services.processes["interest"])
            check_until_restarted(services, "interest")
        kill_and_reap(services.processes["interest"])
        with pytest.raises(RuntimeError, match="service interest exited with status -9 after 2"):
            services.check()
    finally:
        services.stop_all(1.0)
    assert said[:2] == [
        "service interest exited with status -9; restarting it in 0.1 s (restart 1 of 2)",
        "restarted interest",
    ]
    assert said[2].endswith("restarting it in 0.1 s (restart 2 of 2)")  # 0.05 doubled
    assert said[4].endswith("(restart 1 of 2)")


MIDDLE = """
import os, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-c", sys.argv[1]],
    env={"EVOREC_UP_PARENT_PID": str(os.getpid())},
)
print(child.pid, flush=True)
time.sleep(60)
"""
WATCHED = """
import time
from evorec import supervisor
supervisor.HAS_PDEATHSIG = False
supervisor.watch_parent(0.05)
time.sleep(60)
"""


def test_where_there_is_no_parent_death_signal_a_child_watches_its_parent() -> None:
    middle = subprocess.Popen(
        [sys.executable, "-c", MIDDLE, WATCHED],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert middle.stdout is not None
    child = int(middle.stdout.readline())
    try:
        time.sleep(0.5)
        assert Path(f"/proc/{child}").exists()
        kill_and_reap(middle)  # SIGKILL: the middle process cannot tell its child
        deadline = time.monotonic() + 5
        while _running(child):
            assert time.monotonic() < deadline, "the child outlived its parent"
            time.sleep(0.05)
    finally:
        if _running(child):
            os.kill(child, signal.SIGKILL)


def _running(pid: int) -> bool:
    """True while `pid` runs (an orphan is reaped by init; a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_the_readme_quotes_the_message_that_stops_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor, "spawn", sleeper)
    services = supervisor.Supervisor({}, supervisor.RestartPolicy(0, 0.05), lambda _: None)
    services.start("interest")
    try:
        kill_and_reap(services.processes["interest"])
        with pytest.raises(RuntimeError) as raised:
            services.check()
    finally:
        services.stop_all(1.0)
    message = str(raised.value).replace("interest", "NAME").replace("-9", "N")
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"`error: {message.replace('after 0', 'after 5')}`" in readme
