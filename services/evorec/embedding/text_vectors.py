"""Text vectors: the smooth-inverse-frequency (SIF) weighted mean of word vectors.

A text's vector is sum_i alpha_i e_{w_i} / n with alpha_i = a / (a + p(w_i)), where p(w) is the
word's frequency in the corpus (Arora, Liang and Ma, "A simple but tough-to-beat baseline for
sentence embeddings", ICLR 2017): frequent words weigh little, rare and specific ones much.
The first principal component of the catalog's vectors, which carries what all texts share
(common words, style), is then removed from every vector, and the result is normalized to unit
length. A text with no word the vectors know has no vector: `embed` returns None for it,
rather than a zero vector that would silently match nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from gensim.models import KeyedVectors

DEFAULT_A = 1e-3


def count_words(corpus: Iterable[list[str]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for tokens in corpus:
        counts.update(tokens)
    return counts


@dataclass
class TextEmbedder:
    """Turns token lists into normalized SIF vectors."""

    vectors: KeyedVectors
    word_counts: dict[str, int]
    a: float = DEFAULT_A
    common_component: np.ndarray | None = None

    def __post_init__(self) -> None:
        total = sum(self.word_counts.values()) or 1
        self._total = total

    @property
    def dimension(self) -> int:
        return int(self.vectors.vector_size)

    def _weighted_mean(self, tokens: Sequence[str]) -> tuple[np.ndarray | None, int]:
        known = [t for t in tokens if t in self.vectors.key_to_index]
        if not known:
            return None, 0
        weights = np.array(
            [self.a / (self.a + self.word_counts.get(t, 0) / self._total) for t in known],
            dtype=np.float32,
        )
        matrix = self.vectors[known]
        mean: np.ndarray = (weights[:, None] * matrix).sum(axis=0) / len(known)
        return mean.astype(np.float32), len(known)

    def _finish(self, vector: np.ndarray) -> np.ndarray | None:
        if self.common_component is not None:
            vector = vector - (vector @ self.common_component) * self.common_component
        norm = float(np.linalg.norm(vector))
        return (vector / norm).astype(np.float32) if norm > 1e-12 else None

    def embed(self, tokens: Sequence[str]) -> tuple[np.ndarray | None, int]:
        """The text's unit vector (None without a known word) and how many tokens were known."""
        mean, known = self._weighted_mean(tokens)
        return (None if mean is None else self._finish(mean)), known

    def fit_common_component(self, documents: Sequence[Sequence[str]]) -> None:
        """Estimates the common component from the catalog's texts (needs two or more)."""
        means = [m for m, _ in map(self._weighted_mean, documents) if m is not None]
        if len(means) < 2:
            self.common_component = None
            return
        _, _, right = np.linalg.svd(np.stack(means), full_matrices=False)
        self.common_component = right[0].astype(np.float32)

    def embed_many(self, documents: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors [n, dim] (zeros where none) and a mask of the documents that have one."""
        matrix = np.zeros((len(documents), self.dimension), dtype=np.float32)
        has_vector = np.zeros(len(documents), dtype=bool)
        for row, tokens in enumerate(documents):
            vector, _ = self.embed(tokens)
            if vector is not None:
                matrix[row] = vector
                has_vector[row] = True
        return matrix, has_vector
