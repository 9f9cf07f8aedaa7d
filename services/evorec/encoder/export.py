"""Export: the encoder as a SavedModel in TensorFlow Serving's layout, with the bundle the
services need beside it.

    <base>/<model name>/<version>/            the SavedModel TF Serving polls
      saved_model.pb, variables/
      assets.extra/tf_serving_warmup_requests  so TF Serving loads without a cold first call
      assets.extra/evorec/                     the bundle: item_table.npy (every item's vector
                                               in encoder space, row = item_index),
                                               text_projection.npy (W: a new item with text
                                               vector t gets W t), items.parquet (ids, titles,
                                               topics), topics.json, word_vectors.bin,
                                               text_vectors.npy (each item's SIF text vector),
                                               the fallback candidate sources fitted on every
                                               event (popularity.npy, item_similarity.npz with
                                               each item's nearest neighbours, markov.npz),
                                               evolution.json and hmm.json (the interest
                                               forecasts' track record, the hidden Markov
                                               model of interest
                                               states: see evorec.evolution.track_record), and
                                               manifest.json (dataset and its hash, model and
                                               training parameters, metrics, creation time)

Signatures: `serving_default` maps a right-padded int32 batch `history` [batch, width] with
its `length` [batch] to `user_vector` [batch, dim] (only the newest max_len items count);
`top_k` also takes `exclude` [batch, width] (item indexes; 0 is ignored) and `k` (scalar),
and returns `item_index` and `score` [batch, k], best first.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
from scipy import sparse

from evorec.baselines import ItemCosine, ItemMarkov, MostPopular, top_per_row
from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut, newest_event_time, user_sequences
from evorec.encoder.batch_shapes import all_shapes, right_padded
from evorec.encoder.model import ScoringEncoder, left_padded
from evorec.encoder.settings import ServingSettings
from evorec.evolution import methods
from evorec.evolution.track_record import fit_evolution
from evorec.topic_distributions import Distribution

HISTORY = tf.TensorSpec([None, None], tf.int32, name="history")
LENGTH = tf.TensorSpec([None], tf.int32, name="length")
EXCLUDE = tf.TensorSpec([None, None], tf.int32, name="exclude")
K = tf.TensorSpec([], tf.int32, name="k")


def serving_module(model: ScoringEncoder) -> tf.Module:
    """The encoder with its item table frozen, behind the two serving signatures.

    The Keras model is captured by the functions rather than tracked as an attribute (Keras
    would add signatures of its own); its variables are tracked through a list, which is what
    the SavedModel needs to hold them.
    """
    module = tf.Module()
    module.encoder_variables = list(model.variables)
    module.table = tf.Variable(model.item_table(training=False), trainable=False, name="item_table")
    max_len = model.config.max_len

    def users(history: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
        # The newest max_len items of each right-padded row, left-padded.
        length = tf.minimum(length, tf.shape(history)[1])
        index = tf.range(max_len)[None, :] + (length[:, None] - max_len)
        items = tf.gather(history, tf.maximum(index, 0), batch_dims=1)
        window = tf.where(index >= 0, items, tf.zeros_like(items))
        return model.encode(window, module.table, training=False, last_only=True)[:, -1, :]

    @tf.function(input_signature=[HISTORY, LENGTH])
    def user_vectors(history: tf.Tensor, length: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"user_vector": users(history, length)}

    @tf.function(input_signature=[HISTORY, LENGTH, EXCLUDE, K])
    def top_k(
        history: tf.Tensor, length: tf.Tensor, exclude: tf.Tensor, k: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        scores = tf.matmul(users(history, length), module.table, transpose_b=True)
        rows = tf.repeat(tf.range(tf.shape(exclude)[0]), tf.shape(exclude)[1])
        positions = tf.stack([rows, tf.reshape(exclude, [-1])], axis=1)
        scores = tf.tensor_scatter_nd_update(
            scores, positions, tf.fill([tf.shape(positions)[0]], -np.inf)
        )
        scores = tf.concat([tf.fill([tf.shape(scores)[0], 1], -np.inf), scores[:, 1:]], axis=1)
        values, indices = tf.math.top_k(scores, k=tf.minimum(k, tf.shape(scores)[1] - 1))
        return {"item_index": indices, "score": values}

    module.user_vectors = user_vectors
    module.top_k = top_k
    return module


def next_version(model_dir: Path) -> int:
    versions = (
        [int(p.name) for p in model_dir.glob("*") if p.name.isdigit()] if model_dir.exists() else []
    )
    return max(versions, default=0) + 1


def _warmup(path: Path, model_name: str, max_len: int) -> None:
    """One request in each shape ranking's Batcher sends with the default batch size
    (evorec.encoder.batch_shapes), for TF Serving to replay at load."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for shape in all_shapes(ServingSettings().max_batch_size, max_len):
            history, length = right_padded([np.array([1], np.int32)], shape)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = "serving_default"
            request.inputs["history"].CopyFrom(tf.make_tensor_proto(history))
            request.inputs["length"].CopyFrom(tf.make_tensor_proto(length))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


# Neighbours kept per item in the exported item-to-item similarity.
SIMILAR_ITEMS_KEPT = 50


def _write_candidate_sources(sequences: list[np.ndarray], n_items: int, bundle: Path) -> None:
    """The baselines, fitted on `sequences`, as the ranking service's candidate sources."""
    np.save(bundle / "popularity.npy", MostPopular(sequences, n_items).counts.astype(np.float32))
    similarity = ItemCosine(sequences, n_items, neighbours=SIMILAR_ITEMS_KEPT).similarity
    sparse.save_npz(bundle / "item_similarity.npz", similarity)
    transitions = top_per_row(ItemMarkov(sequences, n_items).transitions, SIMILAR_ITEMS_KEPT)
    sparse.save_npz(bundle / "markov.npz", transitions)


def _encoder_next_topics(
    model: ScoringEncoder, table: tf.Tensor, histories: list[np.ndarray], item_topics: list[str]
) -> list[Distribution]:
    """The encoder's next-item distribution after each history, summed per topic (in batches,
    so that no [users, items] matrix is held whole)."""
    found: list[Distribution] = []
    for start in range(0, len(histories), 256):
        batch = left_padded(histories[start : start + 256], model.config.max_len)
        users = model.encode(tf.constant(batch), table, training=False, last_only=True)[:, -1, :]
        scores = tf.matmul(users, table, transpose_b=True).numpy()
        found += methods.topic_mass(methods.next_item_probabilities(scores), item_topics)
    return found


def _write_evolution(
    model: ScoringEncoder, table: tf.Tensor, dataset: DatasetLayout, bundle: Path, seed: int
) -> None:
    """The interest forecasts' track record on the validation split and the hidden Markov
    model, fitted on the training sequences."""
    data = LeaveOneOut.load(dataset)
    items = pd.read_parquet(dataset.items, columns=["item_index", "topic_id"])
    item_topics = [""] * (model.n_items + 1)
    for index, topic in zip(items["item_index"], items["topic_id"], strict=True):
        item_topics[int(index)] = str(topic or "")
    topics = json.loads(dataset.topics.read_text())["topics"]
    fit_evolution(
        histories=[[item_topics[i] for i in h if item_topics[i]] for h in data.train],
        next_topics=[item_topics[int(i)] for i in data.valid_target],
        encoder_first=_encoder_next_topics(model, table, data.train, item_topics),
        topic_labels={t["topic_id"]: t["label"] for t in topics},
        seed=seed,
    ).write(bundle)


def export_model(
    model: ScoringEncoder,
    dataset: DatasetLayout,
    base: Path,
    model_name: str,
    details: dict[str, Any],
    version: int | None = None,
    source_sequences: list[np.ndarray] | None = None,
) -> Path:
    """Writes the SavedModel and its bundle; returns the version folder. The version is
    written under a temporary name and renamed at the end, so that TF Serving (which polls
    the base path) never sees a half-written version.

    The bundle's candidate sources (popularity, item similarity, Markov transitions) are
    fitted on `source_sequences`, by default every user's whole sequence, as serving wants
    them; an offline evaluation of the ranking path passes the training sequences, or the
    sources would hold the very transitions it is asked to predict."""
    model_dir = base / model_name
    version = version or next_version(model_dir)
    final = model_dir / str(version)
    staging = model_dir / f".{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    module = serving_module(model)
    tf.saved_model.save(
        module,
        str(staging),
        signatures={"serving_default": module.user_vectors, "top_k": module.top_k},
    )
    _warmup(
        staging / "assets.extra" / "tf_serving_warmup_requests", model_name, model.config.max_len
    )
    bundle = staging / "assets.extra" / "evorec"
    bundle.mkdir(parents=True, exist_ok=True)
    np.save(bundle / "item_table.npy", module.table.numpy())
    kernel = model.text_kernel()
    if kernel is not None:
        np.save(bundle / "text_projection.npy", kernel)
    for source in (dataset.items, dataset.topics, dataset.word_vectors):
        shutil.copy(source, bundle / source.name)
    shutil.copy(dataset.item_vectors, bundle / "text_vectors.npy")
    sequences = user_sequences(dataset) if source_sequences is None else source_sequences
    _write_candidate_sources(sequences, model.n_items, bundle)
    _write_evolution(
        model, module.table, dataset, bundle, int(details.get("training", {}).get("seed", 0))
    )
    dataset_manifest = dataset.read_manifest()
    manifest = {
        "model_name": model_name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {
            "name": dataset_manifest["name"],
            "events_sha256": dataset_manifest["outputs"]["events.parquet"],
            "items_sha256": dataset_manifest["outputs"]["items.parquet"],
            # How far the version has seen: a retrain judges it only on later events.
            "newest_event_time": newest_event_time(dataset),
        },
        "encoder": model.config.as_dict(),
        "n_items": model.n_items,
        **details,
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    staging.rename(final)
    return final
