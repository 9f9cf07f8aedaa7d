"""The TypeScript client (clients/node): its example, compiled with tsc from the committed
code, runs on Node.js against the four real services."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, Stack
from tests.cross_language import (
    USER,
    missing,
    require_tool,
    run_quickstart,
    start_services,
)

PACKAGE = ROOT / "clients/node"


@pytest.fixture(scope="session")
def node_quickstart(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs the example, compiled into a temporary folder."""
    node = require_tool("node", "Node.js 18 or later")
    if not (PACKAGE / "node_modules/.bin/tsc").is_file():
        missing("the Node.js client's dependencies are not installed: npm ci --prefix clients/node")
    out = tmp_path_factory.mktemp("node-client")
    built = subprocess.run(
        [str(PACKAGE / "node_modules/.bin/tsc"), "-p", str(PACKAGE), "--outDir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return [node, str(out / "examples/quickstart.js")]


async def test_the_typescript_example_runs_against_the_services(
    node_quickstart: list[str],
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    prepared: Path,
    model_base: Path,
    tmp_path: Path,
) -> None:
    services = await start_services(stack, monkeypatch, prepared, model_base, tmp_path)
    await run_quickstart(
        services,
        lambda interest, ranking: [
            *node_quickstart,
            "--interest",
            interest,
            "--ranking",
            ranking,
            "--user",
            USER,
            *services.items,
        ],
        # The compiled example sits outside the package; its dependencies are the package's.
        env={"NODE_PATH": str(PACKAGE / "node_modules")},
    )
