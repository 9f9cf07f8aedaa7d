"""How `evorec up` runs its child processes: they die with it, and a service that exits is
restarted.

Every child is started with a parent-death signal (Linux `prctl(PR_SET_PDEATHSIG)`): when the
launcher dies, however it dies (SIGKILL included), the kernel sends each child SIGTERM, so no
service is left holding its ports. Elsewhere, where no such signal exists, each child gets
the launcher's pid (`EVOREC_UP_PARENT_PID`) and `watch_parent` stops it once its parent is
gone. Each child runs in its own process group, so that a Ctrl-C at the terminal reaches the
launcher alone, which then stops the services in order.

A service that exits is started again after a backoff that doubles with each restart in a
row; after `max_restarts` restarts in a row (a service that stayed up for STABLE_AFTER_S
starts a new row), everything is stopped with a message that names the service.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_PID_ENV = "EVOREC_UP_PARENT_PID"
POLL_S = 0.2
# A service that ran this long before it exited is restarted as if for the first time.
STABLE_AFTER_S = 60.0
MAX_BACKOFF_S = 30.0
# Whether the kernel offers a parent-death signal (a variable: either branch is checked).
HAS_PDEATHSIG = sys.platform.startswith("linux")


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn (run in the child between fork and exec) that asks Linux for SIGTERM when
    the parent dies; None where there is no such request (see `watch_parent`)."""
    if not HAS_PDEATHSIG:
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Starts `evorec ARGS` as a child that dies with this process, in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "evorec", *args],
        env={**env, PARENT_PID_ENV: str(os.getpid())},
        # preexec_fn is unsafe only with threads; the launcher runs on one.
        preexec_fn=_die_with_parent(os.getpid()),
        process_group=0,
    )


def watch_parent(interval_s: float = 1.0) -> None:
    """Where the kernel sends no parent-death signal, a daemon thread sends this process
    SIGTERM once the launcher that started it (named in PARENT_PID_ENV) is gone."""
    given = os.environ.get(PARENT_PID_ENV)
    if HAS_PDEATHSIG or not given:
        return

    def watch() -> None:
        while os.getppid() == int(given):
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent watch", daemon=True).start()


def run_to_end(args: list[str], env: dict[str, str]) -> None:
    """Runs `evorec ARGS` as a child to its end; stops it when this process is interrupted;
    raises RuntimeError when it fails."""
    process = spawn(args, env)
    try:
        status = process.wait()
    except BaseException:
        stop([process], 5.0)
        raise
    if status != 0:
        raise RuntimeError(f"`evorec {' '.join(args)}` failed with status {status}")


def stop(processes: list[subprocess.Popen[bytes]], wait_s: float) -> None:
    """SIGTERM to each process (services drain), then SIGKILL to any still running after
    `wait_s`."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class RestartPolicy:
    """How often, and how soon, a service that exited is started again."""

    max_restarts: int = 5
    initial_backoff_s: float = 1.0

    def backoff(self, restarts: int) -> float:
        """Seconds before restart number `restarts + 1` of a row."""
        return float(min(MAX_BACKOFF_S, self.initial_backoff_s * 2**restarts))


@dataclass
class _Service:
    process: subprocess.Popen[bytes]
    started: float
    restarts: int = 0  # in a row, without STABLE_AFTER_S of running between them
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Runs `evorec serve NAME` per service; `check` restarts those that exited."""

    env: dict[str, str]
    policy: RestartPolicy
    say: Callable[[str], None]
    services: dict[str, _Service] = field(default_factory=dict)

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        return {name: service.process for name, service in self.services.items()}

    def start(self, name: str) -> None:
        process = spawn(["serve", name], self.env)
        previous = self.services.get(name)
        restarts = previous.restarts if previous else 0
        self.services[name] = _Service(process, time.monotonic(), restarts)

    def check(self) -> None:
        """Schedules a restart of each service that exited, starts those whose backoff is
        over; raises RuntimeError once a service has used up its restarts."""
        now = time.monotonic()
        for name, service in self.services.items():
            if service.restart_at is not None:
                if now >= service.restart_at:
                    self.start(name)
                    self.say(f"restarted {name}")
                continue
            status = service.process.poll()
            if status is None:
                continue
            if now - service.started >= STABLE_AFTER_S:
                service.restarts = 0
            if service.restarts >= self.policy.max_restarts:
                raise RuntimeError(
                    f"service {name} exited with status {status} after {service.restarts}"
                    " restarts in a row; stopped all services"
                )
            delay = self.policy.backoff(service.restarts)
            service.restarts += 1
            service.restart_at = now + delay
            self.say(
                f"service {name} exited with status {status}; restarting it in {delay:.1f} s"
                f" (restart {service.restarts} of {self.policy.max_restarts})"
            )

    def stop_all(self, wait_s: float) -> None:
        stop([service.process for service in self.services.values()], wait_s)
