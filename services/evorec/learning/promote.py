"""`evorec promote`: move a version label (stable) to the version another label (canary)
points at, once that version is proven to load and answer.

TF Serving refuses a label on a version it has not loaded, and a label on a broken version
would send every caller of that label to errors; so before the label moves, the version's
bundle is loaded and its SavedModel encodes one history into a finite vector of the model's
width, as TF Serving's warmup would. The version is one TF Serving has loaded already: the
source label (canary) moved there only once TF Serving reported it AVAILABLE
(`evorec.encoder.publish.move_label`), so the config written here, which moves the target
label only, is one TF Serving takes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from evorec.encoder.bundle import ModelBundle, model_versions
from evorec.encoder.publish import set_version_label

log = logging.getLogger("evorec.retrain")


@dataclass(frozen=True)
class Promotion:
    label: str
    version: int
    previous: int | None


def labels(config_file: Path, model_name: str) -> dict[str, int]:
    """The version labels of `model_name` in TF Serving's model config."""
    config = model_server_config_pb2.ModelServerConfig()
    if config_file.exists():
        text_format.Parse(config_file.read_text(), config)
    for model in config.model_config_list.config:
        if model.name == model_name:
            return dict(model.version_labels)
    return {}


def check_answers(version_dir: Path) -> None:
    """Raises unless the version's bundle loads and its SavedModel encodes a history."""
    import numpy as np
    import tensorflow as tf

    try:
        bundle = ModelBundle.load(version_dir)
        encode = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
        vector = encode(
            history=tf.constant([[1, min(2, bundle.n_items)]], tf.int32),
            length=tf.constant([2], tf.int32),
        )["user_vector"].numpy()
    except Exception as error:  # whatever TensorFlow raises, the version is unusable
        raise ValueError(f"{version_dir} does not load and answer: {error}") from error
    if vector.shape != (1, bundle.item_table.shape[1]) or not np.isfinite(vector).all():
        raise ValueError(f"{version_dir} answers a vector of shape {vector.shape}, not finite")


def promote(config_file: Path, model_dir: Path, source: str, target: str) -> Promotion:
    """Points `target` at the version `source` points at, after `check_answers`."""
    current = labels(config_file, model_dir.name)
    if source not in current:
        raise ValueError(f"{config_file} has no label {source!r} for model {model_dir.name}")
    version = current[source]
    if version not in model_versions(model_dir):
        raise ValueError(f"label {source} points at version {version}, absent from {model_dir}")
    check_answers(model_dir / str(version))
    set_version_label(config_file, model_dir.name, target, version)
    promotion = Promotion(target, version, current.get(target))
    log.info("label %s: version %s -> %s", target, promotion.previous, version)
    return promotion
