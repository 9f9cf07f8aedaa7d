"""Where the ranking service's memory and start-up time go, one step at a time: this process
takes the steps ranking takes before it serves, on an exported model version, and prints the
resident set (VmRSS) and wall time after each.

    .venv/bin/python scripts/ranking_memory.py VERSION_DIR [--repeat-space]

VERSION_DIR: one exported version (for example DIR/models/encoder/1 of
`scripts/bench_catalog.py --work DIR`). The steps: TensorFlow and the service's modules
imported; the version's bundle loaded (`ModelBundle.load`: item ids, titles, tables, the
sparse similarity and Markov rows); the SavedModel loaded and warmed for every batch shape
(`InProcessBackend.load`); the catalog mirror as its first sync leaves it when the catalog is
the dataset's own items (one `MirroredItem` per item with its own text vector, as
`CatalogMirror.sync` makes them from `ListItems`; the gRPC transfer itself is not part of
this); the item space with its two vector indexes (`ItemSpace`, with the index settings read
from `EVOREC_INDEX__...` as the service reads them). --repeat-space builds the space once
more from the first, as a catalog change does (both alive while the second is built).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import numpy as np
from bench_catalog import memory_mib

from evorec.encoder.backends import InProcessBackend
from evorec.encoder.bundle import ModelBundle
from evorec.platform.config import Settings
from evorec.ranking.catalog import MirroredItem
from evorec.ranking.item_space import ItemSpace


def mirrored_items(bundle: ModelBundle) -> dict[str, MirroredItem]:
    """The mirror's items after its first sync of a catalog holding the bundle's items."""
    return {
        bundle.item_ids[row]: MirroredItem(
            item_id=bundle.item_ids[row],
            title=bundle.titles[row],
            topic_id=bundle.topic_ids[row],
            vector=np.array(bundle.text_vectors[row], dtype=np.float32),
        )
        for row in range(1, len(bundle.item_ids))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version_dir", type=Path)
    parser.add_argument("--repeat-space", action="store_true")
    args = parser.parse_args()
    settings = Settings()
    rows: list[tuple[str, float, float]] = []
    previous_rss = 0.0
    started = time.monotonic()

    def step(name: str) -> None:
        nonlocal previous_rss, started
        rss = memory_mib(os.getpid())[0]
        rows.append((name, rss - previous_rss, time.monotonic() - started))
        print(f"{name:<46} {rss - previous_rss:>+9,.0f} MiB {rss:>9,.0f} MiB {rows[-1][2]:>7.1f} s")
        previous_rss, started = rss, time.monotonic()

    print(f"{'step':<46} {'added':>13} {'resident':>13} {'time':>9}")
    step("imports (TensorFlow, faiss, the service's)")
    bundle = ModelBundle.load(args.version_dir)
    step(f"bundle of {bundle.n_items:,} items")
    backend = InProcessBackend(settings.serving.signature_name, settings.serving.max_batch_size)
    asyncio.run(backend.load(args.version_dir))
    step("SavedModel loaded and warmed")
    items = mirrored_items(bundle)
    step("catalog mirror")
    space = ItemSpace(bundle, items, None, settings.index)
    step(f"item space ({space.encoder_index.description})")
    if args.repeat_space:
        again = ItemSpace(bundle, dict(items), space, settings.index)
        step("item space built again (a catalog change)")
        assert again.encoder_index is space.encoder_index
    peak = memory_mib(os.getpid())[1]
    print(f"{'peak resident (VmHWM)':<46} {'':>13} {peak:>9,.0f} MiB")


if __name__ == "__main__":
    main()
