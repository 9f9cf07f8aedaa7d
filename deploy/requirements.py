"""Prints what an image installs before evorec's own source, one requirement a line: the
build backend and the runtime dependencies of a pyproject.toml, with the extras named after
it (`python requirements.py pyproject.toml model`). The images install these in a layer of
their own, so that a change of the source does not reinstall them."""

import sys
import tomllib
from pathlib import Path

pyproject = tomllib.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
requirements = [*pyproject["build-system"]["requires"], *pyproject["project"]["dependencies"]]
for extra in sys.argv[2:]:
    requirements += pyproject["project"]["optional-dependencies"][extra]
print("\n".join(requirements))
