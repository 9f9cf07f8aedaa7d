"""Prints what an image installs before evorec's own source, one requirement a line: the
runtime dependencies of a pyproject.toml with the extras named after it
(`python requirements.py pyproject.toml model`); with `--build-system` first, the build
backend's requirements too (the wheelhouse needs them to build evorec without the network).
The images install these in a layer of their own, so that a change of the source does not
reinstall them."""

import sys
import tomllib
from pathlib import Path

arguments = sys.argv[1:]
build_system = arguments[:1] == ["--build-system"]
path, *extras = arguments[1:] if build_system else arguments
pyproject = tomllib.loads(Path(path).read_text(encoding="utf-8"))
requirements = list(pyproject["project"]["dependencies"])
for extra in extras:
    requirements += pyproject["project"]["optional-dependencies"][extra]
if build_system:
    requirements += pyproject["build-system"]["requires"]
print("\n".join(requirements))
