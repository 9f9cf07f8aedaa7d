"""The few shapes the encoder is called with.

Why: TensorFlow's CPU kernels (oneDNN) keep compiled primitives and scratch memory for each
input shape they meet, so a process that sends every batch as it comes ([1..64 histories] x
[1..200 items]) grows by about 150 MiB over its first thousand calls, the last of it only
when a rare shape first comes (BENCHMARKS.md, "Soak"; scripts/encoder_shape_memory.py).
The Batcher therefore pads each batch to a bounded set of shapes: its rows up to the next of
1, 2, 3, 4, 6, 8, 12, 16, 24, ... (at most half a batch of padding), its width up to the
next multiple of WIDTH_STEP (at most the model's max_len). The in-process backend runs every
one of these shapes once when it loads a version, and the export writes them as TensorFlow
Serving's warm-up requests, so memory is flat from the first call. The padding costs little
(6 % of CPU per call on uniformly random shapes): rows and positions past a history's length
are masked, and most stored histories are at max_len already.
"""

from __future__ import annotations

import math

import numpy as np

# Widths are multiples of this many items (or the model's max_len).
WIDTH_STEP = 16


def row_buckets(max_batch: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, 24, ... (each power of two and one and a half times it)
    below `max_batch`, then `max_batch` itself."""
    buckets = {1, max_batch}
    power = 1
    while power < max_batch:
        buckets.update(b for b in (power, power + power // 2) if b < max_batch)
        power *= 2
    return sorted(b for b in buckets if b <= max_batch)


def widths(max_len: int) -> list[int]:
    """WIDTH_STEP, 2 x WIDTH_STEP, ... below `max_len`, then `max_len`."""
    return [*range(WIDTH_STEP, max_len, WIDTH_STEP), max_len]


def batch_shape(rows: int, longest: int, max_batch: int, max_len: int | None) -> tuple[int, int]:
    """The padded [rows, width] of a batch of `rows` histories, the longest `longest` items
    long; `max_len` None (not known): the width is left as it is. A batch beyond the bounds
    (more rows than `max_batch`, a history longer than `max_len`) keeps its own size."""
    padded_rows = next((b for b in row_buckets(max_batch) if b >= rows), rows)
    longest = max(1, longest)
    if max_len is None or longest > max_len:
        return padded_rows, longest
    return padded_rows, min(max_len, WIDTH_STEP * math.ceil(longest / WIDTH_STEP))


def all_shapes(max_batch: int, max_len: int) -> list[tuple[int, int]]:
    """Every shape `batch_shape` gives for batches within the bounds."""
    return [(rows, width) for rows in row_buckets(max_batch) for width in widths(max_len)]


def right_padded(
    histories: list[np.ndarray], shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One int32 batch with zeros after each history, and the lengths: [len(histories),
    longest], or `shape` (at least that large; the rows beyond the histories hold one
    padding item, length 1, and their answers are to be ignored)."""
    length = np.ones(len(histories) if shape is None else shape[0], dtype=np.int32)
    length[: len(histories)] = [len(h) for h in histories]
    width = max(1, int(length.max(initial=0))) if shape is None else shape[1]
    batch = np.zeros((len(length), width), dtype=np.int32)
    for row, history in enumerate(histories):
        batch[row, : len(history)] = history
    return batch, length
