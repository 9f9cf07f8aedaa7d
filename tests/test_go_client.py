"""The Go client (clients/go): its example, compiled from the committed code against the Go
libraries Debian packages, runs against the four real services."""

from __future__ import annotations

import os
import shutil
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

MODULE = "github.com/evorec/evorec/clients/go"
# Debian's golang-*-dev packages (grpc-go, protobuf, genproto) install their sources here.
DEBIAN_GOPATH = Path("/usr/share/gocode")


@pytest.fixture(scope="session")
def go_quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example, built offline in GOPATH mode: the committed module is copied to its
    import path in a temporary GOPATH, its dependencies come from Debian's packages."""
    go = require_tool("go", "apt-get install golang-go, as .ci/run does")
    if not (DEBIAN_GOPATH / "src/google.golang.org/grpc").is_dir():
        missing("Debian's grpc-go is not installed (golang-google-grpc-dev)")
    gopath = tmp_path_factory.mktemp("gopath")
    shutil.copytree(ROOT / "clients/go", gopath / "src" / MODULE)
    binary = gopath / "bin" / "quickstart"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{gopath}{os.pathsep}{DEBIAN_GOPATH}",
        "GOFLAGS": "",
    }
    built = subprocess.run(
        [go, "build", "-o", str(binary), f"{MODULE}/examples/quickstart"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    return binary


async def test_the_go_example_runs_against_the_services(
    go_quickstart: Path,
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
            str(go_quickstart),
            "-interest",
            interest,
            "-ranking",
            ranking,
            "-user",
            USER,
            *services.items,
        ],
        # grpc-go before 1.40 (Debian's is 1.33) retries only when this is on.
        env={"GRPC_GO_RETRY": "on"},
    )
