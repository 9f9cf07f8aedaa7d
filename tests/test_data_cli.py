"""`evorec data synth` and `evorec data prepare` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def evorec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
    env["EVOREC_DATA_DIR"] = str(cwd / "data")
    env["COLUMNS"] = "120"
    return subprocess.run(
        [sys.executable, "-m", "evorec", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_synth_then_prepare_prints_the_report_and_writes_the_dataset(tmp_path: Path) -> None:
    synth = evorec(
        "data", "synth", str(tmp_path / "raw"), "--users", "30", "--items", "60", cwd=tmp_path
    )
    assert synth.returncode == 0, synth.stderr
    prepare = evorec("data", "prepare", str(tmp_path / "raw"), "--topics", "4", cwd=tmp_path)
    assert prepare.returncode == 0, prepare.stderr
    assert "data quality: raw" in prepare.stdout
    assert "dropped: exact duplicate" in prepare.stdout
    manifest = json.loads((tmp_path / "data" / "datasets" / "raw" / "manifest.json").read_text())
    assert manifest["counts"]["items"] == 60
    assert manifest["counts"]["topics"] == 4


def test_prepare_errors_are_one_line(tmp_path: Path) -> None:
    result = evorec("data", "prepare", str(tmp_path / "missing"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"error: no such file or folder: {tmp_path / 'missing'}\n"
    (tmp_path / "events.csv").write_text("user_id,item_id,timestamp\n" + "u,i\n" * 10 + "u,i,1\n")
    bad = evorec("data", "prepare", str(tmp_path / "events.csv"), cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: 10 of 11 rows did not parse (more than 5%)")


def test_download_lists_the_known_datasets(tmp_path: Path) -> None:
    result = evorec("data", "download", "--list", cwd=tmp_path)
    assert result.returncode == 0
    assert "ml-100k" in result.stdout
