"""Publishing an exported version into TensorFlow Serving's base path, and pointing a version
label (stable, canary) at it in TF Serving's model config file.

The version is copied under a hidden staging name and renamed into place, so that neither
TF Serving nor the ranking service (both poll the base path) ever sees half of it. The model
config is TF Serving's own `ModelServerConfig` in text format, read and written with its
protobuf classes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from evorec.encoder.bundle import model_versions


def publish(version_dir: Path, base: Path) -> Path:
    """Copies `version_dir` (an exported `<model>/<version>` folder) to
    `<base>/<model>/<version>`; returns the new folder."""
    if version_dir.name not in map(str, model_versions(version_dir.parent)):
        raise ValueError(f"{version_dir} is not a complete exported model version")
    target = base / version_dir.parent.name / version_dir.name
    if target.exists():
        raise FileExistsError(f"{target} exists: versions are immutable, export a new one")
    staging = target.parent / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(version_dir, staging)
    staging.rename(target)
    return target


def set_version_label(config_file: Path, model_name: str, label: str, version: int) -> None:
    """Points `label` of `model_name` at `version` in TF Serving's model config, and makes
    sure that version is among those TF Serving loads (a label needs a loaded version)."""
    config = model_server_config_pb2.ModelServerConfig()
    if config_file.exists():
        text_format.Parse(config_file.read_text(), config)
    models = config.model_config_list.config
    model = next((m for m in models if m.name == model_name), None)
    if model is None:
        model = models.add(
            name=model_name, base_path=f"/models/{model_name}", model_platform="tensorflow"
        )
    specific = model.model_version_policy.specific
    if version not in specific.versions:
        specific.versions.append(version)
    model.version_labels[label] = version
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(text_format.MessageToString(config))
