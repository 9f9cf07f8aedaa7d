"""Regenerates the Go and TypeScript clients of the contracts in protos/ with buf.

    python scripts/generate_clients.py          # rewrite the generated code
    python scripts/generate_clients.py --check  # exit 1 when the committed code is stale

protos/buf.gen.yaml generates the contracts for Go (into clients/go/evorec/v1) and for
TypeScript (into clients/node/src/gen); clients/node/buf.gen.yaml adds the TypeScript types
of google.rpc's error details and gRPC's health service, which the Node.js helper decodes.
The plugins are local, so this runs offline: protoc-gen-go and protoc-gen-go-grpc of Debian
bookworm (the versions below), and ts-proto as pinned in clients/node/package-lock.json
(npm ci --prefix clients/node). Where one is missing, --check skips with a message on a
developer's machine and fails in CI (the environment variable CI is set).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ["protos/buf.gen.yaml", "clients/node/buf.gen.yaml"]
# Each folder the templates write to, with the names of the generated files in it (the
# others, such as the Go package's doc.go, are written by hand).
GENERATED = {Path("clients/go/evorec/v1"): "*.pb.go", Path("clients/node/src/gen"): "*.ts"}
# The generators the committed code comes from; other versions write other headers.
PLUGINS = {
    "protoc-gen-go": "protoc-gen-go v1.28.1",
    "protoc-gen-go-grpc": "protoc-gen-go-grpc 1.0",
}
TS_PROTO = ROOT / "clients/node/node_modules/.bin/protoc-gen-ts_proto"


def missing_generators() -> list[str]:
    """What is absent or of another version than the committed code was generated with."""
    problems = []
    for plugin, version in PLUGINS.items():
        if shutil.which(plugin) is None:
            problems.append(f"{plugin} is not installed (Debian: apt-get install {plugin})")
            continue
        found = subprocess.run([plugin, "--version"], capture_output=True, text=True).stdout
        if found.strip() != version:
            problems.append(f"{plugin} is {found.strip()!r}, the committed code needs {version!r}")
    if not TS_PROTO.exists():
        problems.append("ts-proto is not installed: npm ci --prefix clients/node")
    return problems


def generate(out_root: Path) -> None:
    """Writes every template's output under `out_root` (same relative paths as in the repo)."""
    buf = Path(sys.executable).parent / "buf"
    for template in TEMPLATES:
        subprocess.run(
            [str(buf), "generate", "--template", template, "--output", str(out_root)],
            check=True,
            cwd=ROOT,
        )


def generated_files(folder: Path, pattern: str) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob(pattern)} if folder.exists() else set()


def stale_files(fresh_root: Path) -> list[str]:
    """Generated files that differ between a fresh generation and the working tree."""
    stale = []
    for folder, pattern in GENERATED.items():
        fresh, committed = fresh_root / folder, ROOT / folder
        for name in sorted(generated_files(fresh, pattern) | generated_files(committed, pattern)):
            a, b = fresh / name, committed / name
            if not a.exists() or not b.exists() or not filecmp.cmp(a, b, shallow=False):
                stale.append(str(folder / name))
    return stale


def replace(fresh_root: Path) -> None:
    for folder, pattern in GENERATED.items():
        for old in generated_files(ROOT / folder, pattern):
            (ROOT / folder / old).unlink()
        for new in generated_files(fresh_root / folder, pattern):
            (ROOT / folder / new).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh_root / folder / new, ROOT / folder / new)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the code is stale")
    args = parser.parse_args()
    problems = missing_generators()
    if problems:
        print("cannot generate the Go and TypeScript clients:", *problems, sep="\n  ")
        if args.check and not os.environ.get("CI"):
            print("skipped the check of the Go and TypeScript clients (CI runs it)")
            return 0
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = stale_files(Path(tmp))
        if args.check:
            if stale:
                print(
                    "stale generated clients: "
                    + ", ".join(stale)
                    + "\nrun: python scripts/generate_clients.py",
                    file=sys.stderr,
                )
                return 1
            print("generated Go and TypeScript clients are fresh")
            return 0
        replace(Path(tmp))
    print(f"regenerated {', '.join(str(folder) for folder in GENERATED)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
