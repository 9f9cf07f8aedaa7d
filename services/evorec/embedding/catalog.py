"""The item catalog of the embedding service: every item's text vector, topic and title, in
memory for search, with items upserted at run time persisted in SQLite.

At start the catalog is the prepared dataset's item table; the items upserted since are
then laid over it from the SQLite file, so an upsert survives restarts and a new dataset.
Search goes through `evorec.vector_index` (exact for small catalogs, approximate for large
ones), over `vectors`, with `has_vector` as the filter.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sqlite_utils

from evorec.data.artifacts import DatasetLayout
from evorec.data.frames import release_arrow_memory


@dataclass(slots=True)
class CatalogItem:
    """An item as the catalog holds it (slotted: a catalog of a million items holds a million
    of them)."""

    item_id: str
    title: str = ""
    text: str = ""
    categories: list[str] = field(default_factory=list)
    topic_id: str = ""
    vector: np.ndarray | None = None
    create_time: float = 0.0
    popularity: int = 0


class ItemCatalog:
    """Items by id and by row, their vectors as one growable matrix."""

    def __init__(self, dimension: int, capacity: int = 1024) -> None:
        self.dimension = dimension
        self.items: list[CatalogItem] = []
        self.rows: dict[str, int] = {}
        self._vectors = np.zeros((capacity, dimension), dtype=np.float32)
        self._has_vector = np.zeros(capacity, dtype=bool)
        # Every put gets the next revision; row r was last changed at _revisions[r].
        self.revision = 0
        self._revisions = np.zeros(capacity, dtype=np.int64)
        # Rows sorted by revision, as of catalog revision _order_revision (changed_after).
        self._order_revision = -1
        self._order = np.zeros(0, dtype=np.int64)
        self._sorted_revisions = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def vectors(self) -> np.ndarray:
        """[items, dim]; rows of items without a vector are zeros."""
        return self._vectors[: len(self.items)]

    @property
    def has_vector(self) -> np.ndarray:
        return self._has_vector[: len(self.items)]

    def get(self, item_id: str) -> CatalogItem | None:
        row = self.rows.get(item_id)
        return None if row is None else self.items[row]

    def put(self, item: CatalogItem) -> bool:
        """Adds or replaces an item; True when it was new. The item's vector becomes a view
        of its row of `vectors`, so that the catalog holds each vector once (a million
        items' vectors are 256 MiB)."""
        row = self.rows.get(item.item_id)
        created = row is None
        if row is None:
            row = len(self.items)
            if row == len(self._vectors):
                self._grow()
            self.items.append(item)
            self.rows[item.item_id] = row
        else:
            self.items[row] = item
        self._has_vector[row] = item.vector is not None
        self._vectors[row] = 0.0 if item.vector is None else item.vector
        if item.vector is not None:
            item.vector = self._vectors[row]
        self.revision += 1
        self._revisions[row] = self.revision
        return created

    def _grow(self) -> None:
        """Doubles the capacity; the items' vectors then view the new rows."""
        self._vectors = np.vstack([self._vectors, np.zeros_like(self._vectors)])
        self._has_vector = np.concatenate([self._has_vector, np.zeros_like(self._has_vector)])
        self._revisions = np.concatenate([self._revisions, np.zeros_like(self._revisions)])
        for row, item in enumerate(self.items):
            if item.vector is not None:
                item.vector = self._vectors[row]

    def changed_after(self, revision: int, limit: int) -> list[tuple[int, int]]:
        """(row, revision) of up to `limit` items changed after `revision`, oldest change
        first. The rows in revision order are sorted once per catalog revision, not per
        call: a mirror's first sync of a million items takes a thousand pages, and sorting
        what was left for each page cost the embedding service minutes of CPU."""
        if self._order_revision != self.revision:
            revisions = self._revisions[: len(self.items)]
            self._order = np.argsort(revisions, kind="stable")
            self._sorted_revisions = revisions[self._order]
            self._order_revision = self.revision
        start = int(np.searchsorted(self._sorted_revisions, revision, side="right"))
        rows = self._order[start : start + limit]
        revisions = self._sorted_revisions[start : start + limit]
        return list(zip(rows.tolist(), revisions.tolist(), strict=True))

    @classmethod
    def from_dataset(cls, layout: DatasetLayout) -> ItemCatalog:
        """The prepared dataset's items, in item_index order."""
        table = pd.read_parquet(layout.items)
        vectors = np.load(layout.item_vectors)
        catalog = cls(vectors.shape[1], capacity=max(1024, 2 * len(table)))
        columns = ("item_id", "item_index", "title", "text", "categories", "topic_id")
        rows = zip(
            *(table[c].tolist() for c in columns),
            table["has_text_vector"].tolist(),
            table["popularity"].tolist(),
            strict=True,
        )
        for item_id, index, title, text, categories, topic_id, has_vector, popularity in rows:
            catalog.put(
                CatalogItem(
                    item_id=str(item_id),
                    title=str(title),
                    text=str(text),
                    categories=[str(c) for c in categories],
                    topic_id=sys.intern(str(topic_id)),
                    vector=vectors[index] if has_vector else None,
                    popularity=int(popularity),
                )
            )
        del table, rows
        release_arrow_memory()
        return catalog


class CatalogStore:
    """Upserted items in SQLite (WAL): written in one transaction per upsert, read at start."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Used from worker threads, one at a time (the lock), hence check_same_thread=False.
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db = sqlite_utils.Database(connection)
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=FULL")
        self.lock = threading.Lock()
        self.table = self.db.table("items")
        if not self.table.exists():
            self.table.create(
                {
                    "item_id": str,
                    "title": str,
                    "text": str,
                    "categories": str,
                    "topic_id": str,
                    "vector": bytes,
                    "create_time": float,
                    "update_time": float,
                    "text_model": str,
                },
                pk="item_id",
            )
        elif "text_model" not in self.table.columns_dict:
            # A store written before rows named their text model: its rows have none, so
            # each is embedded again once.
            self.table.add_column("text_model", str)

    def save(self, items: Sequence[CatalogItem], text_model: str) -> None:
        """Stores `items`, whose vectors and topics the text model of fingerprint
        `text_model` computed."""
        now = time.time()
        rows = [
            {
                "item_id": item.item_id,
                "title": item.title,
                "text": item.text,
                "categories": json.dumps(item.categories, ensure_ascii=False),
                "topic_id": item.topic_id,
                "vector": None if item.vector is None else item.vector.astype(np.float32).tobytes(),
                "create_time": item.create_time,
                "update_time": now,
                "text_model": text_model,
            }
            for item in items
        ]
        with self.lock, self.db.conn:
            self.table.upsert_all(rows, pk="item_id")

    def load(self, dimension: int, text_model: str) -> Iterable[tuple[CatalogItem, bool]]:
        """The stored items, each with whether its vector and topic are current: computed by
        the text model of fingerprint `text_model` (vectors of another one, even of the same
        dimension, are not comparable with this one's, so such an item must be embedded and
        classified again; it comes without a vector)."""
        with self.lock:
            rows = list(self.table.rows)
        for row in rows:
            vector = (
                None if row["vector"] is None else np.frombuffer(row["vector"], dtype=np.float32)
            )
            current = row["text_model"] == text_model and (
                vector is None or vector.shape == (dimension,)
            )
            yield (
                CatalogItem(
                    item_id=row["item_id"],
                    title=row["title"],
                    text=row["text"],
                    categories=json.loads(row["categories"]),
                    topic_id=row["topic_id"],
                    vector=vector if current else None,
                    create_time=row["create_time"],
                ),
                current,
            )

    def close(self) -> None:
        self.db.conn.close()
