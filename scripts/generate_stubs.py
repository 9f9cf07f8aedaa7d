"""Regenerates the Python stubs of the contracts in protos/ into services/evorec/v1/.

    python scripts/generate_stubs.py          # rewrite the stubs
    python scripts/generate_stubs.py --check  # exit 1 when the committed stubs are stale

Messages come from protoc (grpcio-tools), service stubs from grpcio-tools' gRPC plugin, and
the `.pyi` type stubs of both from mypy-protobuf, which keeps the contracts' doc comments.
The exact versions of those generators are pinned in pyproject.toml's `dev` extra, so the
output is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE = Path("evorec") / "v1"
STUB_DIR = ROOT / "services" / PACKAGE
INIT_TEXT = '"""Generated from protos/evorec/v1 by scripts/generate_stubs.py; do not edit."""\n'


def generate(out_root: Path) -> Path:
    """Writes the stubs under `out_root`/evorec/v1 and returns that folder."""
    bin_dir = Path(sys.executable).parent
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE).glob("*.proto"))
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out=quiet:{out_root}",
        f"--mypy_grpc_out=quiet:{out_root}",
        *protos,
    ]
    (out_root / PACKAGE).mkdir(parents=True, exist_ok=True)
    subprocess.run(command, check=True, cwd=PROTO_ROOT)
    (out_root / PACKAGE / "__init__.py").write_text(INIT_TEXT)
    (out_root / PACKAGE / "py.typed").write_text("")
    return out_root / PACKAGE


def stale_files(fresh: Path, committed: Path) -> list[str]:
    """Names of files that differ between the fresh and the committed stub folders."""
    names = {p.name for p in fresh.iterdir() if p.is_file()}
    names |= {p.name for p in committed.iterdir() if p.is_file()} if committed.exists() else set()
    return sorted(
        name
        for name in names
        if not (fresh / name).exists()
        or not (committed / name).exists()
        or not filecmp.cmp(fresh / name, committed / name, shallow=False)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the stubs are stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = stale_files(fresh, STUB_DIR)
        if args.check:
            if stale:
                print(
                    "stale generated stubs: "
                    + ", ".join(stale)
                    + "\nrun: python scripts/generate_stubs.py",
                    file=sys.stderr,
                )
                return 1
            print("generated stubs are fresh")
            return 0
        shutil.rmtree(STUB_DIR, ignore_errors=True)
        shutil.copytree(fresh, STUB_DIR, ignore=shutil.ignore_patterns("__pycache__"))
        print(f"wrote {len(list(STUB_DIR.iterdir()))} files to {STUB_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
