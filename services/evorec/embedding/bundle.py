"""The text side of a prepared dataset, loaded: word vectors, SIF parameters, topics."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from gensim.models import KeyedVectors

from evorec.data.artifacts import DatasetLayout
from evorec.embedding.text_vectors import TextEmbedder
from evorec.embedding.topics import TopicModel


@dataclass
class TextModel:
    """What turns tokens into item vectors and topics, and which version it is."""

    embedder: TextEmbedder
    topics: TopicModel
    version: str

    @classmethod
    def load(cls, layout: DatasetLayout) -> TextModel:
        manifest = layout.read_manifest()
        vectors = KeyedVectors.load_word2vec_format(str(layout.word_vectors), binary=True)
        counts = json.loads(layout.word_counts.read_text())
        sif = np.load(layout.sif)
        common = sif["common_component"]
        embedder = TextEmbedder(vectors, counts, float(sif["a"]), common if common.size else None)
        topics = TopicModel.from_json(
            json.loads(layout.topics.read_text()), np.load(layout.topic_centroids)
        )
        digest = manifest["outputs"]["text/word_vectors.bin"][:12]
        return cls(embedder, topics, f"{manifest['name']}@{digest}")
