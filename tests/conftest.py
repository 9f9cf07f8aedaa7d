"""Shared fixtures: settings on ephemeral loopback ports, and services started for real."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from evorec.data.readers import read_dataset
from evorec.data.synth import SimulatorConfig, SyntheticDataset, simulate
from evorec.platform.config import Settings, load_settings
from evorec.platform.registry import create_service
from evorec.platform.server import GrpcService, RunningServer, start_server
from evorec.preparation import PrepareOptions, prepare

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose services all listen on free loopback ports, with a short grace period;
    no EVOREC_ variable of the shell that started the tests reaches them."""
    for variable in [v for v in os.environ if v.startswith("EVOREC_")]:
        monkeypatch.delenv(variable)
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


SYNTH = SimulatorConfig(users=80, items=160, topics=4, events_per_user=30, seed=11)


@pytest.fixture(scope="session")
def synthetic() -> SyntheticDataset:
    """A small simulated dataset with its truth (80 users, 160 items, 4 topics)."""
    return simulate(SYNTH)


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory: pytest.TempPathFactory, synthetic: SyntheticDataset) -> Path:
    """The small simulated dataset as `evorec data synth` writes it (with truth/); read only."""
    raw_dir = tmp_path_factory.mktemp("synthetic-raw")
    synthetic.write(raw_dir, SYNTH)
    return raw_dir


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, synthetic_raw: Path) -> Path:
    """The small simulated dataset, prepared (clusters into its 4 topics); shared, read only."""
    out = tmp_path_factory.mktemp("synthetic-prepared")
    prepare(read_dataset(synthetic_raw), out, PrepareOptions(topics=SYNTH.topics))
    return out


def export_small_model(dataset: Path, base: Path, version: int, seed: int = 0) -> Path:
    """Trains a small transformer with text on `dataset` for a few epochs and exports it as
    `<base>/encoder/<version>`."""
    import numpy as np

    from evorec.data.artifacts import DatasetLayout
    from evorec.data.sequences import LeaveOneOut
    from evorec.encoder.config import EncoderConfig, TrainingConfig
    from evorec.encoder.export import export_model
    from evorec.encoder.model import SequenceEncoder
    from evorec.encoder.training import Trainer

    layout = DatasetLayout(dataset)
    data = LeaveOneOut.load(layout)
    config = EncoderConfig(dim=32, max_len=50, blocks=1, dropout=0.1)
    model = SequenceEncoder(data.n_items, config, np.load(layout.item_vectors), seed=seed)
    training = TrainingConfig(
        epochs=4, batch_size=32, warmup_steps=5, learning_rate=5e-3, seed=seed
    )
    Trainer(model, data, training).fit()
    return export_model(model, layout, base, "encoder", {"metrics": {}}, version=version)


@pytest.fixture(scope="session")
def model_base(tmp_path_factory: pytest.TempPathFactory, prepared: Path) -> Path:
    """A TF Serving base path holding version 1 of a small model of the simulated data."""
    base = tmp_path_factory.mktemp("models")
    export_small_model(prepared, base, version=1)
    return base


class Stack:
    """Real evorec services started one after another on free ports; each later service's
    settings point at the ports the earlier ones got."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.running: dict[str, RunningServer] = {}

    def settings(self) -> Settings:
        return load_settings()

    async def start(self, name: str) -> RunningServer:
        current = load_settings()
        server = await start_server(
            create_service(name, current), current.endpoint(name), current.server
        )
        self.running[name] = server
        self.monkeypatch.setenv(f"EVOREC_{name.upper()}__PORT", str(server.port))
        try:
            await server.ready()
        except BaseException:
            await self.stop(name)
            raise
        return server

    async def stop(self, name: str) -> None:
        await self.running.pop(name).shutdown()


@pytest.fixture
async def stack(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    """Start real services with `await stack.start("preprocess")`; all stop at the end."""
    services = Stack(monkeypatch)
    yield services
    for name in reversed(list(services.running)):
        await services.stop(name)
