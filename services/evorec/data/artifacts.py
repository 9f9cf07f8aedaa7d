"""The on-disk layout of a prepared dataset, which training and the services load.

    <dataset>/
      manifest.json        format version, source files and their SHA-256, parameters,
                           counts, and the SHA-256 of every file written here
      report.json          the data-quality report of cleaning
      events.parquet       the clean events, in time order: user_id, item_id, user_index,
                           item_index (1-based), timestamp, event_type, value, text, line, and
                           one label column per split (split_loo, split_time, split_new_item)
      items.parquet        one row per item with events, in item_index order: item_id,
                           item_index, title, text, categories, popularity, topic_id,
                           topic_id_every_split, has_text_vector. `topic_id_every_split` is
                           the topic the every-split text gives the item (the protocols read
                           it); `topic_id` (serving) is that topic, or where it is "" the
                           one the embedding service would give on an upsert of the item
                           (from its categories or its leave-one-out text vector)
      text/
        word_vectors.bin   word vectors in word2vec's binary format (Word2Vec trained
                           here, or the pretrained ones given)
        word_counts.json   token -> count over the corpus (the SIF word frequencies)
        item_vectors.npy   float32 [items + 1, dim]: row item_index is that item's
                           normalized text vector; row 0 and items without text are zeros.
                           An item without catalog text is described by the reviews of
                           leave-one-out's training events (what serving, `evorec train`
                           and the leave-one-out protocol read)
        item_vectors_every_split.npy  the same, from the reviews of events that are
                           `train` under every split and under the leave-one-out the
                           cold-start and evolution protocols make of their own training
                           events (what those protocols read: their held-out events include
                           some of leave-one-out's training events); word vectors, word
                           counts, sif.npz and topics come from this text
        sif.npz            the SIF parameter `a` and the common component removed (from
                           both item vector tables, and from texts embedded later)
        topics.json        how topics were made (categories or clusters), and each topic's
                           id, label, top words and size
        topic_centroids.npy  float32 [topics, dim], in topics.json order

`FORMAT_VERSION` changes whenever this layout does, or what preparation writes into it
(4: events at one instant no longer in the file's order, evorec.data.cleaning).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

FORMAT_VERSION = 4

# Which reviews may describe items without catalog text: those of leave-one-out's training
# events, or those of events that are `train` under every split (see `DatasetLayout`).
ItemText = Literal["leave_one_out", "every_split"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class DatasetLayout:
    """The paths of a prepared dataset under `root`."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    @property
    def events(self) -> Path:
        return self.root / "events.parquet"

    @property
    def items(self) -> Path:
        return self.root / "items.parquet"

    @property
    def text(self) -> Path:
        return self.root / "text"

    @property
    def word_vectors(self) -> Path:
        return self.text / "word_vectors.bin"

    @property
    def word_counts(self) -> Path:
        return self.text / "word_counts.json"

    @property
    def item_vectors(self) -> Path:
        return self.text / "item_vectors.npy"

    @property
    def every_split_item_vectors(self) -> Path:
        return self.text / "item_vectors_every_split.npy"

    def item_vectors_of(self, text: ItemText) -> Path:
        """The item vectors whose review text is `text`."""
        return self.item_vectors if text == "leave_one_out" else self.every_split_item_vectors

    @property
    def sif(self) -> Path:
        return self.text / "sif.npz"

    @property
    def topics(self) -> Path:
        return self.text / "topics.json"

    @property
    def topic_centroids(self) -> Path:
        return self.text / "topic_centroids.npy"

    def exists(self) -> bool:
        return self.manifest.exists()

    def is_current(self) -> bool:
        """Whether a dataset of this evorec's format is prepared here."""
        try:
            self.read_manifest()
        except (FileNotFoundError, ValueError):
            return False
        return True

    def write_json(self, path: Path, value: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")

    def read_manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(self.manifest.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{self.root} has dataset format {manifest.get('format_version')}, "
                f"this evorec reads {FORMAT_VERSION}: prepare it again"
            )
        return manifest

    def output_hashes(self) -> dict[str, str]:
        """SHA-256 of every file of the dataset but the manifest, by relative path."""
        return {
            str(path.relative_to(self.root)): sha256_of(path)
            for path in sorted(self.root.rglob("*"))
            if path.is_file() and path != self.manifest
        }
