"""The repository's scripts run from tests: to the end as a user runs them, or imported."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from types import ModuleType

from tests.conftest import ROOT

NUMBER = r"[\d,.]+"


def run_script(name: str, *args: str, timeout: float = 240, status: int = 0) -> str:
    """Runs scripts/`name` with `args` to the end, expecting it to exit with `status`; its
    standard output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == status, done.stderr[-3000:]
    return done.stdout


def assert_rows(output: str, rows: list[str]) -> None:
    """Each pattern matches a whole Markdown table row of `output`."""
    lines = output.splitlines()
    for row in rows:
        assert any(re.fullmatch(row, line) for line in lines), (row, output)


def script_module(name: str) -> ModuleType:
    """scripts/NAME.py imported as module NAME (registered in sys.modules, where a dataclass
    of the script looks its module up)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
