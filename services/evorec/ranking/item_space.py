"""Every recommendable item in one index space: the model version's items first (indexes
1..n, as the encoder was trained), then the catalog's items that arrived after training.

A new item has no trained id embedding, so its encoder-space vector is its text vector
through the model's own text projection (`t @ W`), exactly what a trained item's vector is
without its id part: the model learned to score such items, through id dropout, and the
same dot product scores them. An id-only model gives new items a zero vector (the text
neighbours source still proposes them).

The encoder source searches `table` through `encoder_index`, and the text neighbours source
searches `text_vectors` through `text_index` (evorec.vector_index: exact below the
threshold, approximate above it), so that no request scores every item's vector. A space built
with the previous one as `previous` (same model version, the catalog's new items only added
to or changed) reuses its indexes: new items are added and changed ones replaced, not
rebuilt.
"""

from __future__ import annotations

import numpy as np

from evorec.encoder.bundle import ModelBundle
from evorec.ranking.catalog import MirroredItem
from evorec.vector_index import VectorIndex, extend_index
from evorec.vector_index_settings import IndexSettings


class ItemSpace:
    """Per-item arrays over the bundle's items and the catalog's newer ones; row 0 is padding."""

    def __init__(
        self,
        bundle: ModelBundle,
        mirrored: dict[str, MirroredItem],
        previous: ItemSpace | None = None,
        index_settings: IndexSettings | None = None,
    ) -> None:
        self.bundle = bundle
        # One copy, taken at once (a C-level copy holds the GIL): the event loop's catalog
        # syncs go on while a space is built in a worker thread.
        mirrored = dict(mirrored)
        known = set(bundle.item_ids)
        new = [item for item_id, item in mirrored.items() if item_id not in known]
        self.n_model_items = bundle.n_items
        self.ids = bundle.item_ids + [item.item_id for item in new]
        self.index = {item_id: i for i, item_id in enumerate(self.ids) if i > 0}
        self.titles = bundle.titles + [item.title for item in new]
        topic_ids = bundle.topic_ids + [item.topic_id for item in new]
        # The catalog owns an item's title and topic: an upsert replaces them for an item the
        # model was trained on too (its topic only with one: the bundle may know the item
        # from reviews the catalog does not have).
        for item_id, item in mirrored.items():
            row = self.index[item_id]
            self.titles[row] = item.title
            topic_ids[row] = item.topic_id or topic_ids[row]
        self.topics = sorted(set(topic_ids) - {""})
        # Topic id -> code; each item's topic code (-1: none).
        self.topic_code = {topic: code for code, topic in enumerate(self.topics)}
        self.topic_codes = np.array([self.topic_code.get(t, -1) for t in topic_ids], dtype=np.int32)
        self.topic_labels = {t: bundle.topic_labels.get(t, t) for t in self.topics}
        text_dim = bundle.text_vectors.shape[1]
        new_text = np.zeros((len(new), text_dim), dtype=np.float32)
        for row, item in enumerate(new):
            if item.vector is not None and item.vector.shape == (text_dim,):
                new_text[row] = item.vector
        self.text_vectors = _appended(bundle.text_vectors, new_text)
        new_table = (
            new_text @ bundle.text_projection
            if bundle.text_projection is not None
            else np.zeros((len(new), bundle.item_table.shape[1]), dtype=np.float32)
        )
        self.table = _appended(bundle.item_table, new_table)
        self.popularity = _appended(bundle.popularity, np.zeros(len(new), dtype=np.float32))
        # Items with any popularity, most popular first.
        order = np.argsort(-self.popularity, kind="stable")
        self.popular_order = order[self.popularity[order] > 0]
        reused = (
            previous
            if previous is not None
            and previous.bundle is bundle
            and previous.ids == self.ids[: len(previous.ids)]
            else None
        )
        settings = index_settings or IndexSettings()
        self.encoder_index: VectorIndex = extend_index(
            reused.encoder_index if reused else None,
            reused.table if reused else None,
            self.table,
            settings,
        )
        self.text_index: VectorIndex = extend_index(
            reused.text_index if reused else None,
            reused.text_vectors if reused else None,
            self.text_vectors,
            settings,
        )

    def __len__(self) -> int:
        """Items, padding row included."""
        return len(self.ids)

    def unit_rows(self, indexes: np.ndarray) -> np.ndarray:
        """The encoder-space vectors of `indexes` scaled to length 1 (zero rows stay zero):
        computed per request for the few items that need them, rather than kept for every
        item (a second copy of the table)."""
        rows = self.table[indexes]
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        unit: np.ndarray = rows / np.where(norms > 0, norms, 1.0)
        return unit

    def is_new(self, index: int) -> bool:
        return index > self.n_model_items

    def topic_of(self, index: int) -> str:
        code = int(self.topic_codes[index])
        return self.topics[code] if code >= 0 else ""

    def label(self, index: int) -> str:
        """The item's title, or its id when it has none."""
        return self.titles[index] or self.ids[index]


def _appended(base: np.ndarray, new: np.ndarray) -> np.ndarray:
    """`base` with the rows of `new` after it, as float32, read-only. Without new rows it is
    `base` itself, not a copy: at a million items the bundle's two tables are 512 MiB, and
    the space is built again at every catalog change."""
    joined = np.asarray(base, dtype=np.float32) if len(new) == 0 else np.concatenate([base, new])
    joined = joined.astype(np.float32, copy=False)
    joined.flags.writeable = False
    return joined
