"""Publishing an exported version into TensorFlow Serving's base path, the version policy TF
Serving's model config follows, and pointing a version label (stable, canary) at a version.

The version is copied under a hidden staging name and renamed into place, so that neither
TF Serving nor the ranking service (both poll the base path) ever sees half of it. The model
config is TF Serving's own `ModelServerConfig` in text format, read and written with its
protobuf classes.

The order of the config writes matters: TF Serving sets a config's labels before it loads
the config's new versions (server_core.cc, `ReloadConfig`), and refuses the whole config
when a label points at a version it has not loaded (unless the label is new to it and it
runs with `--allow_version_labels_for_unavailable_models=true`). A refused config is never
loaded, so its version never becomes available and every later poll of the same file fails
the same way. Hence the versions first (`apply_version_policy`), and the label only once TF
Serving reports the version AVAILABLE (`move_label`).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from evorec.encoder.bundle import model_versions

if TYPE_CHECKING:
    from evorec.platform.config import Settings


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
    sure that version is among those TF Serving loads (a label needs a loaded version).
    Written alone, for a TF Serving that runs: the version must be loaded already, or TF
    Serving refuses the config (see `move_label`)."""
    config = read_model_config(config_file)
    model = _model(config, model_name)
    specific = model.model_version_policy.specific
    if version not in specific.versions:
        specific.versions.append(version)
        specific.versions.sort()
    model.version_labels[label] = version
    _write(config_file, config)


# How long `move_label` waits for TF Serving to report a published version AVAILABLE before
# it leaves the label where it was: TF Serving re-reads its config every
# --model_config_file_poll_wait_seconds (30 s in our deployments), then loads and warms up
# the version.
LABEL_WAIT_S = 120.0
# How often TF Serving is asked meanwhile.
STATUS_POLL_S = 0.5


class LabelNotMoved(RuntimeError):
    """TF Serving did not report the version AVAILABLE in time: the label was not moved (the
    version is published and in the config's versions all the same)."""


async def wait_until_available(
    settings: Settings, model_name: str, version: int, wait_s: float
) -> None:
    """Returns once TF Serving (`settings.serving`'s address and TLS) reports `version` of
    `model_name` AVAILABLE; raises LabelNotMoved after `wait_s`, or at once on an error
    that waiting does not cure (a refused certificate, say)."""
    import grpc

    from evorec.encoder.backends import TFServingBackend, available_versions, is_expected_failure

    backend = TFServingBackend(settings.serving, settings.client, settings.server, settings.tls)
    where = f"TF Serving at {settings.serving.tf_serving_target}"
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                loaded = await available_versions(
                    backend.models, model_name, settings.serving.timeout_s
                )
            except grpc.aio.AioRpcError as error:
                said = f"{error.code().name}: {error.details()}"
                if not is_expected_failure(error):
                    raise LabelNotMoved(f"{where} answered {said}") from error
            else:
                if version in loaded:
                    return
                said = f"versions {sorted(loaded)} AVAILABLE"
            if time.monotonic() >= deadline:
                raise LabelNotMoved(
                    f"{where} did not report version {version} of {model_name} AVAILABLE"
                    f" within {wait_s:g} s (last: {said})"
                )
            await asyncio.sleep(STATUS_POLL_S)
    finally:
        await backend.close()


def move_label(
    config_file: Path, model_dir: Path, label: str, version: int, settings: Settings
) -> list[int]:
    """Points `label` at `version` (published under `model_dir`, and already among the
    config's versions: `apply_version_policy` first) once TF Serving reports it AVAILABLE,
    then writes the version policy again, so that a version only the label held may go;
    returns the versions TF Serving then loads. Raises LabelNotMoved, the label left where
    it was, when the version is not AVAILABLE within LABEL_WAIT_S.

    With the in-process backend no TF Serving runs to ask: the label is written at once, for
    a TF Serving started later, which takes the labels of its first config as new ones
    (with --allow_version_labels_for_unavailable_models=true) and sets them once it has
    loaded their versions."""
    if settings.serving.backend == "tf_serving":
        try:
            asyncio.run(wait_until_available(settings, model_dir.name, version, LABEL_WAIT_S))
        except LabelNotMoved as error:
            raise LabelNotMoved(
                f"label {label} not moved to version {version}: {error}. Version {version} is"
                f" published and {config_file} lists it; once TF Serving reports it AVAILABLE,"
                f" move the label with `evorec export {model_dir / str(version)} --base"
                f" {model_dir.parent} --label {label} --model-config {config_file}`"
            ) from error
    set_version_label(config_file, model_dir.name, label, version)
    return apply_version_policy(config_file, model_dir.name, model_versions(model_dir))
