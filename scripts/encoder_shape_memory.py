"""Why the encoder's batches are padded to a few shapes: the resident memory of a process that
calls an exported SavedModel with batches of random shapes, against the same calls padded by
`evorec.encoder.batch_shapes`, and the time the in-process backend takes to load a version
and warm every shape.

    .venv/bin/python scripts/encoder_shape_memory.py MODEL_VERSION_DIR [--calls 5000]
        [--max-batch 64]

Each mode runs in a process of its own (memory is per process): `--calls` calls of the
`serving_default` signature, each a batch of 1 to `--max-batch` histories of 1 to the model's
max_len item indexes, drawn at random (seeded); "padded" pads each to its shape first.
Printed: the process's VmRSS after the first call and every 1,000 calls, and the CPU seconds
per call; then the load-and-warm time of `InProcessBackend`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from evorec.encoder.batch_shapes import batch_shape, right_padded
from evorec.encoder.bundle import BUNDLE_DIR

REPORT_EVERY = 1_000


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def calls(model_dir: Path, mode: str, count: int, max_batch: int) -> None:
    """The calls of one mode, in this process; prints its memory as it goes."""
    import tensorflow as tf

    manifest = json.loads((model_dir / BUNDLE_DIR / "manifest.json").read_text())
    max_len, n_items = int(manifest["encoder"]["max_len"]), int(manifest["n_items"])
    signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    rng = np.random.default_rng(0)
    started = time.process_time()
    for number in range(count):
        rows, width = int(rng.integers(1, max_batch + 1)), int(rng.integers(1, max_len + 1))
        histories = [rng.integers(1, n_items + 1, size=width) for _ in range(rows)]
        shape = batch_shape(rows, width, max_batch, max_len) if mode == "padded" else None
        history, length = right_padded(histories, shape)
        signature(history=tf.constant(history), length=tf.constant(length))
        if number == 0 or (number + 1) % REPORT_EVERY == 0:
            print(f"{mode}: after {number + 1:,} calls, {rss_mib():,.0f} MiB", flush=True)
    print(f"{mode}: {(time.process_time() - started) / count * 1000:.1f} ms CPU per call")


def warm_time(model_dir: Path, max_batch: int) -> None:
    import asyncio

    from evorec.encoder.backends import InProcessBackend

    backend = InProcessBackend(max_batch=max_batch)
    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(backend.load(model_dir))
    print(
        f"load and warm every shape: {time.perf_counter() - wall:.1f} s, "
        f"{time.process_time() - cpu:.1f} s CPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a version folder of an exported model")
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--mode", choices=("random", "padded", "warm"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "warm":
        warm_time(args.model, args.max_batch)
        return
    if args.mode:
        calls(args.model, args.mode, args.calls, args.max_batch)
        return
    for mode in ("random", "padded", "warm"):
        subprocess.run(
            [sys.executable, __file__, str(args.model), "--calls", str(args.calls),
             "--max-batch", str(args.max_batch), "--mode", mode],
            check=True,
        )  # fmt: skip


if __name__ == "__main__":
    main()
