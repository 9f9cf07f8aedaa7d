"""Word vectors: Word2Vec trained with gensim on catalog and user text, or pretrained vectors
loaded from a file (word2vec text or binary format, or GloVe's header-less text format)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gensim.models import KeyedVectors, Word2Vec

PretrainedFormat = Literal["word2vec", "word2vec-binary", "glove"]


@dataclass(frozen=True)
class Word2VecOptions:
    """Word2Vec's parameters; the defaults suit catalogs of thousands to millions of words."""

    vector_size: int = 64
    window: int = 5
    min_count: int = 2
    skip_gram: bool = True
    negative: int = 10
    # None: about three million tokens' worth of passes, between 5 and 30.
    epochs: int | None = None
    # One worker makes training reproducible from the seed; more are faster.
    workers: int = 1
    seed: int = 0


def _stable_hash(text: str) -> int:
    """gensim seeds each word's initial vector from this hash; Python's own hash() changes
    between processes, which would make training irreproducible."""
    return zlib.crc32(text.encode("utf-8"))


def train_word2vec(corpus: Sequence[list[str]], options: Word2VecOptions) -> KeyedVectors:
    """Trains Word2Vec on token lists; returns the word vectors."""
    tokens = sum(len(doc) for doc in corpus)
    epochs = options.epochs or min(30, max(5, round(3_000_000 / max(1, tokens))))
    model = Word2Vec(
        sentences=[doc for doc in corpus if doc],
        vector_size=options.vector_size,
        window=options.window,
        min_count=options.min_count,
        sg=1 if options.skip_gram else 0,
        negative=options.negative,
        epochs=epochs,
        workers=options.workers,
        seed=options.seed,
        hashfxn=_stable_hash,
    )
    return model.wv


def load_pretrained(path: Path, file_format: PretrainedFormat) -> KeyedVectors:
    """Loads pretrained vectors; a malformed file (e.g. a row of the wrong dimension) is a
    ValueError that says where."""
    try:
        vectors: KeyedVectors = KeyedVectors.load_word2vec_format(
            str(path),
            binary=file_format == "word2vec-binary",
            no_header=file_format == "glove",
            unicode_errors="replace",
        )
    except (ValueError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {file_format} vectors from {path}: {error}") from error
    return vectors


def restricted(vectors: KeyedVectors, words: Iterable[str]) -> KeyedVectors:
    """`vectors` with only the `words` it has, in its own order."""
    wanted = set(words)
    kept = [word for word in vectors.index_to_key if word in wanted]
    result = KeyedVectors(vectors.vector_size, dtype=vectors.vectors.dtype)
    if kept:
        result.add_vectors(kept, vectors[kept])
    return result
