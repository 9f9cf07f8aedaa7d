"""Where an exported model's versions lie, and which are complete.

Apart from `evorec.encoder.bundle` (which loads a version, with NumPy, pandas and SciPy) so
that `evorec up`'s launcher, which only asks whether a model is there yet, imports no
numerical library and stays small while it watches the services.
"""

from __future__ import annotations

from pathlib import Path

BUNDLE_DIR = Path("assets.extra") / "evorec"


def model_versions(model_dir: Path) -> list[int]:
    """The complete versions under `<base>/<model name>/`, oldest first (a version being
    written is staged under another name, so a listed one is whole)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(p.name)
        for p in model_dir.iterdir()
        if p.name.isdigit() and (p / "saved_model.pb").exists() and (p / BUNDLE_DIR).is_dir()
    )
