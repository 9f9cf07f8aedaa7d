"""Any exported version scored on a prepared dataset's newest events, as ranking would use it.

The gate compares the candidate with the serving version on the same events: the newest
event of each user (the leave-one-out test target), given everything before it, for the
users whose newest event is later than anything the serving version was trained on (when
its retrain report says how far that was). So neither trained on it: the candidate's
training stops two events short of each user's end, and the event is newer than the
serving version's data. Both are scored through their exported
SavedModels, so the candidate is also proven to load and answer before it may be published.
The serving version knows fewer items: as in ranking, an item it never held is left out of
the history the encoder reads and is scored through its text (`t @ W`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from evorec.data.artifacts import DatasetLayout
from evorec.data.sequences import LeaveOneOut
from evorec.data.splits import TEST
from evorec.encoder.bundle import ModelBundle
from evorec.evaluation.metrics import RankingMetrics, mask_seen, positions

BATCH = 256


def dataset_item_ids(layout: DatasetLayout) -> list[str]:
    """The dataset's item ids by item index (index 0: padding, "")."""
    items = pd.read_parquet(layout.items, columns=["item_id", "item_index"])
    ids = [""] * (int(items["item_index"].max()) + 1)
    for item_id, index in zip(items["item_id"], items["item_index"], strict=True):
        ids[int(index)] = str(item_id)
    return ids


def version_scores(
    version_dir: Path, item_ids: list[str], text_vectors: np.ndarray, histories: list[np.ndarray]
) -> np.ndarray:
    """Scores [users, len(item_ids)] of every item (in the dataset's indexing) after each
    history, computed by the exported version at `version_dir`."""
    bundle = ModelBundle.load(version_dir)
    encode = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    own = {item_id: i for i, item_id in enumerate(bundle.item_ids) if i > 0}
    mapping = np.array([own.get(item_id, 0) if i else 0 for i, item_id in enumerate(item_ids)])
    known = mapping > 0
    table = np.zeros((len(item_ids), bundle.item_table.shape[1]), np.float32)
    table[known] = bundle.item_table[mapping[known]]
    if bundle.text_projection is not None:
        table[~known] = text_vectors[~known] @ bundle.text_projection
        table[0] = 0.0
    out = []
    for start in range(0, len(histories), BATCH):
        mapped = [
            mapping[h][mapping[h] > 0][-bundle.max_len :] for h in histories[start : start + BATCH]
        ]
        width = max(1, max(len(m) for m in mapped))
        batch = np.zeros((len(mapped), width), np.int32)
        for row, items in enumerate(mapped):
            batch[row, : len(items)] = items
        users = encode(
            history=tf.constant(batch), length=tf.constant([len(m) for m in mapped], tf.int32)
        )["user_vector"].numpy()
        out.append(users @ table.T)
    return np.concatenate(out)


def newest_event_metrics(
    version_dir: Path, layout: DatasetLayout, after_time: float | None = None
) -> tuple[dict[str, float], int]:
    """HR, NDCG at 5/10/20 and MRR of the version on each user's newest event of `layout`
    (seen items excluded, every item ranked), and the number of users they average over:
    only users whose newest event is later than `after_time`, when given."""
    data = LeaveOneOut.load(layout)
    events = pd.read_parquet(layout.events, columns=["user_index", "timestamp", "split_loo"])
    newest = events[events["split_loo"] == TEST].sort_values("user_index", kind="stable")
    chosen = np.ones(len(data.test_target), bool)
    if after_time is not None:
        chosen = newest["timestamp"].to_numpy() > after_time
    if not chosen.any():
        return {}, 0
    histories = [h for h, keep in zip(data.test_input, chosen, strict=True) if keep]
    scores = version_scores(
        version_dir, dataset_item_ids(layout), np.load(layout.item_vectors), histories
    )
    ranked = mask_seen(scores, histories)
    metrics = RankingMetrics.from_positions(positions(ranked, data.test_target[chosen])).values
    return metrics, len(histories)
