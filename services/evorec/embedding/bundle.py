"""The text side of a prepared dataset, loaded: word vectors, SIF parameters, topics, and the
MiniLM model when the dataset was prepared with it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from gensim.models import KeyedVectors

from evorec.data.artifacts import DatasetLayout
from evorec.embedding.text_vectors import TextEmbedder
from evorec.embedding.topics import TopicModel

if TYPE_CHECKING:
    from evorec.embedding.minilm import MiniLMEncoder


@dataclass
class TextModel:
    """What turns text into item vectors and topics, and which version it is. `minilm` is
    set when the dataset's item vectors are MiniLM's: texts are then embedded by it, not by
    the SIF mean of the word vectors. `fingerprint` names everything a vector or topic
    depends on (`version` names only the word vectors or MiniLM's weights), so that an item
    stored under another text model is known to need embedding again."""

    embedder: TextEmbedder
    topics: TopicModel
    version: str
    fingerprint: str
    minilm: MiniLMEncoder | None = None

    @classmethod
    def load(cls, layout: DatasetLayout, text_models: Path | None = None) -> TextModel:
        """Loads the dataset's text model; `text_models` is the folder holding `minilm/`,
        needed when the dataset was prepared with `--text-encoder minilm`."""
        manifest = layout.read_manifest()
        vectors = KeyedVectors.load_word2vec_format(str(layout.word_vectors), binary=True)
        counts = json.loads(layout.word_counts.read_text())
        sif = np.load(layout.sif)
        common = sif["common_component"]
        embedder = TextEmbedder(vectors, counts, float(sif["a"]), common if common.size else None)
        topics = TopicModel.from_json(
            json.loads(layout.topics.read_text()), np.load(layout.topic_centroids)
        )
        encoder = manifest.get("text_encoder", {"name": "word2vec"})
        text_files = (
            layout.word_vectors,
            layout.word_counts,
            layout.sif,
            layout.topics,
            layout.topic_centroids,
        )
        names = [str(path.relative_to(layout.root)) for path in text_files]
        # The manifest holds each file's SHA-256: no need to hash the files again.
        parts: dict[str, object] = {name: manifest["outputs"][name] for name in names}
        if encoder["name"] != "minilm":
            digest = manifest["outputs"]["text/word_vectors.bin"][:12]
            return cls(embedder, topics, f"{manifest['name']}@{digest}", _fingerprint(parts))
        from evorec.embedding.minilm import MiniLMEncoder
        from evorec.embedding.model_files import MINILM

        if encoder["sha256"] != MINILM.sha256:
            raise ValueError(
                f"{layout.root} was prepared with MiniLM files {encoder['sha256']}, "
                f"this evorec runs {MINILM.sha256}: prepare it again"
            )
        if text_models is None:
            raise ValueError(f"{layout.root} was prepared with MiniLM: give its model folder")
        minilm = MiniLMEncoder.load(text_models / MINILM.name)
        digest = MINILM.sha256["model.safetensors"][:12]
        parts["minilm"] = MINILM.sha256
        version = f"{manifest['name']}@minilm-{digest}"
        return cls(embedder, topics, version, _fingerprint(parts), minilm)


def _fingerprint(parts: dict[str, object]) -> str:
    """SHA-256 of `parts` (file -> SHA-256) in a canonical form."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
