"""The cost of ranking's own per-request work on a large catalog: `recommend()` (candidate
sources, vector index searches, blend, MMR, reasons) over an exported model version's item
space, in this one process, without gRPC, the interest service or the model.

    .venv/bin/python scripts/profile_recommend.py VERSION_DIR [--requests 200]
        [--history 200] [--top 12]

VERSION_DIR: one exported version (for example DIR/models/encoder/1 of
`scripts/bench_catalog.py --work DIR`). Each request is a history of --history items drawn
at random from the catalog, k = 10, the default filters, diversity and settings (read from
`EVOREC_...` as the service reads them); its user vector is the mean of the last 20 history
items' encoder-space vectors (the SavedModel is not called: its cost is measured apart, by
`scripts/bench_ranking.py`'s bare-model figure). BLAS is kept to one thread, as in the
service. Prints the mean time per request and cProfile's --top functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from evorec.encoder.bundle import ModelBundle
from evorec.platform.config import Settings
from evorec.ranking.item_space import ItemSpace
from evorec.ranking.recommender import Query, recommend

WARM_UP = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version_dir", type=Path)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--history", type=int, default=200)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    threadpool_limits(limits=1, user_api="blas")
    settings = Settings()
    space = ItemSpace(ModelBundle.load(args.version_dir), {}, None, settings.index)
    rng = np.random.default_rng(0)
    requests = []
    for _ in range(WARM_UP + args.requests):
        history = rng.integers(1, len(space), args.history)
        query = Query(
            history=history,
            event_types=np.zeros(len(history), np.int32),
            k=10,
            diversity=settings.recommend.diversity,
        )
        requests.append((query, space.table[history[-20:]].mean(axis=0)))
    for query, user_vector in requests[:WARM_UP]:
        recommend(space, query, user_vector, settings.recommend)
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    for query, user_vector in requests[WARM_UP:]:
        recommend(space, query, user_vector, settings.recommend)
    profile.disable()
    took = (time.perf_counter() - started) / args.requests
    print(f"{len(space) - 1:,} items, index {space.encoder_index.description}")
    print(f"recommend(): {took * 1000:.2f} ms per request (mean of {args.requests}, profiled)")
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
