"""Where the preparation of a simulated catalog spends its time (issue #17: a catalog of a
million items took 905 s to prepare): cProfile over `scripts/bench_catalog.py`'s own
preparation (the simulator, the covering views, `evorec.preparation.prepare` with word
vectors of one pass), summarized as the functions with the most cumulative time.

    .venv/bin/python scripts/profile_preparation.py [--items 100000] [--users 1000]
        [--events-per-user 200] [--top 35]

cProfile adds a cost per Python call, so the per-call loops it points at look larger than
they run unprofiled; the shares still say which steps grow with the catalog. The prepared
dataset goes to a temporary directory and is deleted.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--events-per-user", type=int, default=200)
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args()
    options = bench_catalog.options(
        [
            "--items", str(args.items), "--users", str(args.users),
            "--events-per-user", str(args.events_per_user),
        ]
    )  # fmt: skip
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as work:
        profile.runcall(bench_catalog.dataset, Path(work), options)
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
