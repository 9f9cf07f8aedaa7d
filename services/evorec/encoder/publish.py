"""Publishing an exported version into TensorFlow Serving's base path, the version policy TF
Serving's model config follows, and pointing a version label (stable, canary) at a version.

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


# The version policy, one for every part: TF Serving loads the newest KEEP_LATEST complete
# versions under the base path and every version a label points at (`specific` versions in
# its model config, written by `evorec export` and `evorec retrain`); ranking serves the
# newest version TF Serving reports AVAILABLE (or a label's), never merely the newest folder.
# Two, so that the version being replaced keeps answering while its successor loads.
KEEP_LATEST = 2


def served_versions(
    available: list[int], labels: dict[str, int], keep: int = KEEP_LATEST
) -> list[int]:
    """The versions TF Serving should load: the newest `keep` of `available` (ascending)
    and those the labels point at."""
    return sorted(set(available[-keep:]) | set(labels.values()))


def read_model_config(config_file: Path) -> model_server_config_pb2.ModelServerConfig:
    """TF Serving's model config file, parsed (empty when the file does not exist)."""
    config = model_server_config_pb2.ModelServerConfig()
    if config_file.exists():
        text_format.Parse(config_file.read_text(), config)
    return config


def _model(
    config: model_server_config_pb2.ModelServerConfig, model_name: str
) -> model_server_config_pb2.ModelConfig:
    models = config.model_config_list.config
    model = next((m for m in models if m.name == model_name), None)
    if model is None:
        model = models.add(
            name=model_name, base_path=f"/models/{model_name}", model_platform="tensorflow"
        )
    return model


def _write(config_file: Path, config: model_server_config_pb2.ModelServerConfig) -> None:
    config_file.parent.mkdir(parents=True, exist_ok=True)
    staging = config_file.with_name(f".{config_file.name}.partial")
    staging.write_text(text_format.MessageToString(config))
    staging.replace(config_file)  # TF Serving never reads half a file


def apply_version_policy(config_file: Path, model_name: str, available: list[int]) -> list[int]:
    """Writes the versions TF Serving loads for `model_name` (see KEEP_LATEST), given the
    complete versions `available` under the base path; returns them."""
    config = read_model_config(config_file)
    model = _model(config, model_name)
    versions = served_versions(available, dict(model.version_labels))
    model.model_version_policy.specific.ClearField("versions")
    model.model_version_policy.specific.versions.extend(versions)
    _write(config_file, config)
    return versions


def set_version_label(config_file: Path, model_name: str, label: str, version: int) -> None:
    """Points `label` of `model_name` at `version` in TF Serving's model config, and makes
    sure that version is among those TF Serving loads (a label needs a loaded version)."""
    config = read_model_config(config_file)
    model = _model(config, model_name)
    specific = model.model_version_policy.specific
    if version not in specific.versions:
        specific.versions.append(version)
        specific.versions.sort()
    model.version_labels[label] = version
    _write(config_file, config)
