"""Warm start: a new encoder begins where the serving version left off.

Retraining every few hours from random weights throws away what the model knew and makes
each version's behaviour jump. Instead the new encoder, built with the serving version's
architecture over the new item indexing, takes every weight of that version: the item id
embeddings of the items both know (matched by item id, since preparation numbers items
afresh), the text projection, positions and blocks as they are. Items new since then keep
their fresh initial id embedding (they are appended), and so do items the serving version
held but never trained on. The weights come from the SavedModel itself (`export` saves the
encoder's variables in order), so nothing but the published version is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from evorec.encoder.bundle import BUNDLE_DIR, ModelBundle
from evorec.encoder.config import EncoderConfig
from evorec.encoder.model import SequenceEncoder


@dataclass(frozen=True)
class WarmStart:
    """What a warm start took over."""

    version: int
    kept_items: int  # id embeddings carried over
    new_items: int  # items that start from a fresh id embedding
    weights: int  # variables copied whole (blocks, positions, projection, norms)

    def as_dict(self) -> dict[str, int]:
        return {
            "version": self.version,
            "kept_items": self.kept_items,
            "new_items": self.new_items,
            "weights": self.weights,
        }


def served_config(version_dir: Path) -> EncoderConfig:
    """The architecture of an exported version (from its bundle's manifest)."""
    manifest = json.loads((version_dir / BUNDLE_DIR / "manifest.json").read_text())
    return EncoderConfig(**manifest["encoder"])


def warm_start(model: SequenceEncoder, version_dir: Path, item_ids: list[str]) -> WarmStart:
    """Copies the weights of the exported version at `version_dir` into `model`, whose item
    `i` is `item_ids[i]` (row 0: padding). The model must have the version's architecture."""
    bundle = ModelBundle.load(version_dir)
    if served_config(version_dir) != model.config:
        raise ValueError(f"{version_dir} has another architecture than the model to train")
    model(tf.zeros([1, model.config.max_len], tf.int32))  # build every weight
    saved = tf.saved_model.load(str(version_dir))
    old_variables = list(saved.encoder_variables)
    if len(old_variables) != len(model.variables):
        raise ValueError(f"{version_dir} holds {len(old_variables)} weights, the model more")
    old_embeddings: np.ndarray | None = None
    copied = 0
    for new, old in zip(model.variables, old_variables, strict=True):
        if new is model.item_ids.embeddings:
            old_embeddings = old.numpy()
        elif tuple(new.shape) == tuple(old.shape):
            new.assign(old)
            copied += 1
        else:
            raise ValueError(f"weight {new.path} has shape {new.shape} in {version_dir}")
    if old_embeddings is None:
        raise ValueError(f"{version_dir} lacks the item id embeddings")
    old_known = _trained_items(bundle, old_embeddings)
    old_index = {item_id: i for i, item_id in enumerate(bundle.item_ids) if i > 0}
    embeddings = model.item_ids.embeddings.numpy()
    kept = 0
    for new_index, item_id in enumerate(item_ids):
        old = old_index.get(item_id)
        if new_index > 0 and old is not None and old_known[old]:
            embeddings[new_index] = old_embeddings[old]
            kept += 1
    model.item_ids.embeddings.assign(embeddings)
    return WarmStart(bundle.version, kept, len(item_ids) - 1 - kept, copied)


def _trained_items(bundle: ModelBundle, embeddings: np.ndarray) -> np.ndarray:
    """Which items the version was trained on: the exported table holds `e_id * known + t W`,
    so a trained item's row minus its projected text is its id embedding, and an untrained
    item's is (up to rounding) zero."""
    id_part = bundle.item_table
    if bundle.text_projection is not None:
        id_part = id_part - bundle.text_vectors @ bundle.text_projection
    found: np.ndarray = np.linalg.norm(id_part, axis=1) > 0.5 * np.linalg.norm(embeddings, axis=1)
    found[0] = False
    return found
