"""Shared fixtures: settings on ephemeral loopback ports, and services started for real."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from evorec.platform.config import Settings, load_settings
from evorec.platform.server import GrpcService, RunningServer, start_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose services all listen on free loopback ports, with a short grace period."""
    for name in ("preprocess", "embedding", "interest", "ranking"):
        monkeypatch.setenv(f"EVOREC_{name.upper()}__PORT", "0")
        monkeypatch.setenv(f"EVOREC_{name.upper()}__METRICS_PORT", "0")
    monkeypatch.setenv("EVOREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EVOREC_SERVER__GRACE_PERIOD_S", "2")
    monkeypatch.delenv("EVOREC_CONFIG_FILE", raising=False)
    return load_settings()


@pytest.fixture
async def started(settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    """`await started(service)` starts a service on an ephemeral port and waits until it
    serves (`ready=False`: returns at once); every one is shut down at the end."""
    running: list[RunningServer] = []

    async def start(service: GrpcService, ready: bool = True) -> RunningServer:
        server = await start_server(service, settings.preprocess, settings.server)
        running.append(server)
        if ready:
            await server.ready()
        return server

    yield start
    for server in reversed(running):
        await server.shutdown()
