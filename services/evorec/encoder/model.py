"""The sequence encoders: a Transformer (causal self-attention, SASRec-style) and an
LSTM/GRU, over items represented as an id embedding plus a learned projection of the item's
text vector.

An item's representation is `e_id + W t` (t: its SIF text vector from preparation). During
training the id part of a random share of items is hidden (id dropout), so the model learns
to rely on the text; an item never seen in training (no trained id embedding) is then scored
through its text alone. The user's interest vector is the encoder's output at the last
position; an item's score is the dot product of that vector with the item's representation,
the same table that represents items on the input side.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from evorec.encoder.config import EncoderConfig


class TransformerBlock(keras.layers.Layer):
    """Pre-norm causal self-attention and a position-wise feed-forward network."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6)
        self.attention = keras.layers.MultiHeadAttention(heads, dim // heads, dropout=dropout)
        self.feed_norm = keras.layers.LayerNormalization(epsilon=1e-6)
        self.feed = keras.Sequential(
            [
                keras.layers.Dense(dim, activation="gelu"),
                keras.layers.Dropout(dropout),
                keras.layers.Dense(dim),
            ]
        )
        self.dropout = keras.layers.Dropout(dropout)

    def call(
        self,
        x: tf.Tensor,
        attention_mask: tf.Tensor,
        training: bool = False,
        last_only: bool = False,
    ) -> tf.Tensor:
        """[batch, length, dim], or with `last_only` [batch, 1, dim]: only the newest
        position attends and is fed forward (all a user vector needs of the last block)."""
        normed = self.attention_norm(x)
        if last_only:
            x, attention_mask = x[:, -1:], attention_mask[:, -1:]
        x = x + self.dropout(
            self.attention(
                normed[:, -1:] if last_only else normed,
                normed,
                attention_mask=attention_mask,
                training=training,
            ),
            training=training,
        )
        return x + self.dropout(self.feed(self.feed_norm(x), training=training), training=training)


class SequenceEncoder(keras.Model):
    """Encodes left-padded item sequences [batch, max_len] into vectors [batch, max_len, dim]."""

    def __init__(
        self,
        n_items: int,
        config: EncoderConfig,
        text_vectors: np.ndarray | None,
        *,
        seed: int,
    ) -> None:
        """`seed` (the training seed) seeds Keras before the layers are made: the id and text
        tables are built here and every dropout's generator is drawn here, before training
        seeds the rest, so without it the first weights depend on whatever the process drew
        before."""
        keras.utils.set_random_seed(seed)
        super().__init__()
        self.seed = seed
        if config.members != 1:
            raise ValueError(
                f"an ensemble of {config.members} encoders is built by evorec.encoder.ensemble, "
                "not as one SequenceEncoder"
            )
        self.n_items = n_items
        self.config = config
        initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.item_ids = keras.layers.Embedding(
            n_items + 1, config.dim, embeddings_initializer=initializer
        )
        self.item_ids.build((None,))
        # 1 for the items training has seen, 0 for the others: an item training never saw has
        # no learned id embedding, so its representation is its text alone (or nothing).
        self.known_items = tf.Variable(
            tf.ones([n_items + 1, 1]), trainable=False, name="known_items"
        )
        # A generator with its own state variable, so that a checkpoint holds where the id
        # dropout's draws stand and a resumed run draws as an uninterrupted one would.
        self.id_dropout_seeds = keras.random.SeedGenerator()
        self.text_projection: keras.layers.Dense | None = None
        if config.use_text:
            if text_vectors is None or text_vectors.shape[0] != n_items + 1:
                raise ValueError("a text model needs one text vector per item (row 0: padding)")
            self.text_vectors = tf.constant(text_vectors, dtype=tf.float32)
            self.text_projection = keras.layers.Dense(
                config.dim, use_bias=False, kernel_initializer=initializer
            )
            self.text_projection.build((None, text_vectors.shape[1]))
        self.positions = keras.layers.Embedding(
            config.max_len, config.dim, embeddings_initializer=initializer
        )
        self.input_dropout = keras.layers.Dropout(config.dropout)
        if config.kind == "transformer":
            self.blocks = [
                TransformerBlock(config.dim, config.heads, config.dropout)
                for _ in range(config.blocks)
            ]
            self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6)
        else:
            layer = keras.layers.GRU if config.kind == "gru" else keras.layers.LSTM
            self.recurrent = layer(config.dim, return_sequences=True)

    def item_table(self, training: bool = False) -> tf.Tensor:
        """Every item's representation [n_items + 1, dim] (row 0: padding)."""
        table = self.item_ids.embeddings * self.known_items
        if self.text_projection is None:
            return table
        if training and self.config.id_dropout > 0:
            keep = tf.cast(
                keras.random.uniform([self.n_items + 1, 1], seed=self.id_dropout_seeds)
                >= self.config.id_dropout,
                table.dtype,
            )
            table = table * keep
        return table + self.text_projection(self.text_vectors)

    def encode(
        self,
        sequences: tf.Tensor,
        table: tf.Tensor,
        training: bool = False,
        last_only: bool = False,
    ) -> tf.Tensor:
        """Outputs at every position [batch, length, dim]; with `last_only`, a Transformer
        computes its last block at the newest position only ([batch, 1, dim]), which is all
        that serving needs and about half the work."""
        mask = sequences > 0
        x = tf.gather(table, sequences) * math.sqrt(self.config.dim)
        x = x + self.positions(tf.range(tf.shape(sequences)[1]))[None]
        x = self.input_dropout(x, training=training) * tf.cast(mask, x.dtype)[..., None]
        if self.config.kind == "transformer":
            length = tf.shape(sequences)[1]
            causal = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)
            attention_mask = tf.logical_and(causal[None], mask[:, None, :])
            for number, block in enumerate(self.blocks):
                last = last_only and number == len(self.blocks) - 1
                x = block(x, attention_mask=attention_mask, training=training, last_only=last)
                x = x * tf.cast(mask[:, -1:] if last else mask, x.dtype)[..., None]
            return self.final_norm(x)
        return self.recurrent(x, mask=mask, training=training)

    def call(self, sequences: tf.Tensor, training: bool = False) -> tf.Tensor:
        """User vectors [batch, dim]: the output at the last (newest) position."""
        return self.encode(sequences, self.item_table(training), training)[:, -1, :]

    def text_kernel(self) -> np.ndarray | None:
        """W [text dim, dim], which maps an item's text vector into the table (None: id only)."""
        if self.text_projection is None:
            return None
        return np.asarray(self.text_projection.kernel.numpy())


class ScoringEncoder(Protocol):
    """What scoring and export need of an encoder: a `SequenceEncoder` or a seed ensemble of
    them (`evorec.encoder.ensemble.EnsembleEncoder`)."""

    n_items: int
    config: EncoderConfig

    @property
    def variables(self) -> Any: ...

    def item_table(self, training: bool = False) -> tf.Tensor: ...

    def encode(
        self,
        sequences: tf.Tensor,
        table: tf.Tensor,
        training: bool = False,
        last_only: bool = False,
    ) -> tf.Tensor: ...

    def text_kernel(self) -> np.ndarray | None: ...


def score_histories(
    model: ScoringEncoder, histories: list[np.ndarray], batch: int = 256
) -> np.ndarray:
    """Scores [users, n_items + 1] of every item after each history, in batches."""
    table = model.item_table(training=False)
    out = []
    for start in range(0, len(histories), batch):
        sequences = left_padded(histories[start : start + batch], model.config.max_len)
        users = model.encode(tf.constant(sequences), table, training=False, last_only=True)
        out.append(tf.matmul(users[:, -1, :], table, transpose_b=True).numpy())
    return np.concatenate(out)


def left_padded(sequences: list[np.ndarray], max_len: int) -> np.ndarray:
    """The newest `max_len` items of each sequence, right-aligned, zeros before."""
    batch = np.zeros((len(sequences), max_len), dtype=np.int32)
    for row, sequence in enumerate(sequences):
        tail = sequence[-max_len:]
        if len(tail):
            batch[row, -len(tail) :] = tail
    return batch
