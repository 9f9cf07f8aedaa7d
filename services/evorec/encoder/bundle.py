"""An exported model version, loaded: the bundle that `evorec.encoder.export` writes beside
the SavedModel (item table, text projection, items, topics, fallback sources, interest forecasts,
manifest).

The ranking service reads it whichever backend computes the user vectors, so that a user
vector from TF Serving and the item table it is scored against come from the same version.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from evorec.data.frames import release_arrow_memory
from evorec.encoder.versions import BUNDLE_DIR, model_versions
from evorec.evolution.track_record import EvolutionModel

# Defined in the light `evorec.encoder.versions`; kept importable from here.
__all__ = ["BUNDLE_DIR", "ModelBundle", "model_versions"]


@dataclass
class ModelBundle:
    """One model version's item space. Row i of every per-item array is item index i; row 0
    is padding."""

    path: Path
    version: int
    manifest: dict[str, Any]
    item_ids: list[str]
    titles: list[str]
    topic_ids: list[str]
    topic_labels: dict[str, str]
    # [items + 1, dim] in encoder space: the dot product with a user vector is the score.
    item_table: np.ndarray
    # [text dim, dim]: an item with text vector t has encoder-space vector t @ W; None for
    # an id-only model.
    text_projection: np.ndarray | None
    # [items + 1, text dim], unit length (zeros without text).
    text_vectors: np.ndarray
    popularity: np.ndarray
    item_similarity: sparse.csr_matrix
    markov: sparse.csr_matrix
    # The interest forecasts' part (track record, transitions, hidden Markov model); None
    # for an export that predates it.
    evolution: EvolutionModel | None

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def max_len(self) -> int:
        return int(self.manifest["encoder"]["max_len"])

    @classmethod
    def load(cls, version_dir: Path) -> ModelBundle:
        bundle = version_dir / BUNDLE_DIR
        manifest = json.loads((bundle / "manifest.json").read_text())
        items = pd.read_parquet(bundle / "items.parquet").sort_values("item_index")
        n_items = int(manifest["n_items"])
        if items["item_index"].tolist() != list(range(1, n_items + 1)):
            raise ValueError(f"{bundle}: items.parquet does not hold items 1..{n_items}")
        topics = json.loads((bundle / "topics.json").read_text())["topics"]
        projection = bundle / "text_projection.npy"
        loaded = cls(
            path=version_dir,
            version=int(manifest["version"]),
            manifest=manifest,
            item_ids=["", *items["item_id"].astype(str)],
            titles=["", *items["title"].astype(str)],
            # One string per topic, not per item.
            topic_ids=["", *map(sys.intern, items["topic_id"].astype(str))],
            topic_labels={t["topic_id"]: t["label"] for t in topics},
            item_table=np.load(bundle / "item_table.npy"),
            text_projection=np.load(projection) if projection.exists() else None,
            text_vectors=np.load(bundle / "text_vectors.npy"),
            popularity=np.load(bundle / "popularity.npy"),
            item_similarity=sparse.load_npz(bundle / "item_similarity.npz").tocsr(),
            markov=sparse.load_npz(bundle / "markov.npz").tocsr(),
            evolution=EvolutionModel.load(bundle),
        )
        del items
        release_arrow_memory()
        return loaded
