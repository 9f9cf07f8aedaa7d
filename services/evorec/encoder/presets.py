"""Named presets: encoder and training settings saved per dataset (by `evorec tune`) and read by
`evorec train` and `evorec evaluate` (`--preset NAME`), under the options given explicitly.

A preset is a JSON file `<dataset>/presets/<NAME>.json`:
`{"encoder": {field: value}, "training": {field: value}, "source": {...}}`, where the fields
are those of `EncoderConfig` and `TrainingConfig` (the options of the commands) and `source`
says where the settings came from (the study, its trial, the validation figure). JSON and not
TOML because the standard library writes it; the module imports neither TensorFlow nor Optuna.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from evorec.encoder.config import EncoderConfig, TrainingConfig

PRESETS_DIR = "presets"
# A preset name is a file name in the presets folder: letters, digits, '.', '_', '-'.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SECTIONS: dict[str, type[EncoderConfig] | type[TrainingConfig]] = {
    "encoder": EncoderConfig,
    "training": TrainingConfig,
}


class PresetError(ValueError):
    """A preset that is missing, malformed or names a setting that does not exist."""


def preset_path(dataset: Path, name: str) -> Path:
    """Where preset `name` of `dataset` lives; `name` may also be the path of a .json file."""
    if name.endswith(".json"):
        return Path(name)
    if not NAME_PATTERN.match(name):
        raise PresetError(
            f"preset name {name!r}: use letters, digits, '.', '_' or '-' (at most 64), "
            "or the path of a .json file"
        )
    return dataset / PRESETS_DIR / f"{name}.json"


def option_fields(section: str) -> set[str]:
    """The fields of a section that are command options (not `kind`, `use_text`)."""
    return {
        f.name
        for f in dataclasses.fields(SECTIONS[section])
        if f.metadata.get("option", True) is not False
    }


def write_preset(
    dataset: Path,
    name: str,
    encoder: dict[str, Any],
    training: dict[str, Any],
    source: dict[str, Any],
) -> Path:
    """Writes preset `name` for `dataset` (replacing one of that name); returns its path."""
    _check({"encoder": encoder, "training": training}, name)
    path = preset_path(dataset, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"encoder": encoder, "training": training, "source": source}
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)  # a reader never sees half a preset
    return path


def read_preset(dataset: Path, name: str) -> dict[str, Any]:
    """Preset `name` of `dataset` as written, checked: its sections name only real options."""
    path = preset_path(dataset, name)
    if not path.is_file():
        folder = dataset / PRESETS_DIR
        known = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        raise PresetError(
            f"no preset {name!r} at {path} (presets of this dataset: "
            f"{', '.join(known) or 'none; `evorec tune` writes them'})"
        )
    try:
        body = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PresetError(f"preset {path} is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise PresetError(f"preset {path}: expected an object with encoder and training")
    _check(body, str(path))
    return body


def apply_preset(
    preset: dict[str, Any],
    encoder: EncoderConfig,
    training: TrainingConfig,
    explicit: Collection[str],
) -> tuple[EncoderConfig, TrainingConfig]:
    """`encoder` and `training` with the preset's settings, except the options in `explicit`
    (those given on the command line), which keep their value."""
    encoder_values = {k: v for k, v in preset.get("encoder", {}).items() if k not in explicit}
    training_values = {k: v for k, v in preset.get("training", {}).items() if k not in explicit}
    return (
        dataclasses.replace(encoder, **encoder_values),
        dataclasses.replace(training, **training_values),
    )


def _check(body: dict[str, Any], where: str) -> None:
    for section, values in body.items():
        if section == "source":
            continue
        if section not in SECTIONS:
            raise PresetError(f"preset {where}: unknown section {section!r} (encoder, training)")
        if not isinstance(values, dict):
            raise PresetError(f"preset {where}: {section} must be an object")
        unknown = set(values) - option_fields(section)
        if unknown:
            raise PresetError(
                f"preset {where}: unknown {section} settings {', '.join(sorted(unknown))}"
            )
        defaults = SECTIONS[section]()
        for key, value in values.items():
            expected = type(getattr(defaults, key))
            fits = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                fits = True
            if not fits:
                raise PresetError(
                    f"preset {where}: {section}.{key} = {value!r} "
                    f"is not of type {expected.__name__}"
                )
