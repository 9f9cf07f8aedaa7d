"""Whether a change to ranking's per-request work left its answers as they were: `recommend()`
over an exported version's item space, for a fixed set of varied queries, recorded with one
version of the code and compared with another's.

    .venv/bin/python scripts/answers_unchanged.py VERSION_DIR --record FILE [--queries 600]
    .venv/bin/python scripts/answers_unchanged.py VERSION_DIR --compare FILE [--queries 600]

Record with the code before the change (for example with `PYTHONPATH` pointing at a checkout
of its commit's `services/`), compare with the code after it. The queries are drawn from a
fixed seed: histories of 0 to 200 items (some with the newest item repeated), event types,
k from 1 to 100, diversity 0, 0.2 or 0.9, seen items kept or excluded, topic filters, the
forecast term on every fifth, and no user vector on about a fifth (the encoder did not
answer); user vectors are random. Every field of every answer must be equal (items, scores
to the last bit, sources, reasons). Prints how many answers differ, and the first that does;
exits 1 when any does.
"""

from __future__ import annotations

import argparse
import pickle
import random
import sys
from pathlib import Path

import numpy as np

from evorec.encoder.bundle import ModelBundle
from evorec.ranking.item_space import ItemSpace
from evorec.ranking.recommender import Answer, Query, recommend
from evorec.ranking.settings import RecommendSettings


def answers(space: ItemSpace, count: int) -> list[Answer]:
    """The answers to `count` queries drawn from a fixed seed."""
    rng = np.random.default_rng(0)
    draw = random.Random(0)
    dimension = space.table.shape[1]
    found = []
    for number in range(count):
        length = draw.choice([0, 1, 3, 20, 200])
        history = rng.integers(1, len(space), size=length)
        if number % 7 == 0 and length:
            history[-3:] = history[-1]
        query = Query(
            history=history.astype(np.int64),
            event_types=rng.integers(1, 8, size=length).astype(np.int32),
            k=draw.choice([1, 5, 10, 40, 100]),
            diversity=draw.choice([0.0, 0.2, 0.9]),
            exclude_seen=draw.random() < 0.9,
            include_topics=draw.sample(space.topics, 2) if draw.random() < 0.2 else (),
            exclude_topics=draw.sample(space.topics, 1) if draw.random() < 0.1 else (),
        )
        vector = (
            None if draw.random() < 0.2 else rng.standard_normal((dimension,), dtype=np.float32)
        )
        settings = RecommendSettings(weight_forecast=0.5 if number % 5 == 0 else 0.0)
        found.append(recommend(space, query, vector, settings))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version_dir", type=Path, help="one exported version")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", type=Path, help="write the answers here")
    mode.add_argument("--compare", type=Path, help="compare with the answers recorded here")
    parser.add_argument("--queries", type=int, default=600)
    args = parser.parse_args()
    space = ItemSpace(ModelBundle.load(args.version_dir), {})
    found = answers(space, args.queries)
    items = sum(len(answer.items) for answer in found)
    if args.record:
        args.record.write_bytes(pickle.dumps(found))
        print(f"recorded {len(found)} answers ({items} items) in {args.record}")
        return
    recorded = pickle.loads(args.compare.read_bytes())
    different = [n for n, (a, b) in enumerate(zip(recorded, found, strict=True)) if a != b]
    print(f"{len(different)} of {len(found)} answers ({items} items) differ")
    if different:
        print(f"first: query {different[0]}\n  recorded {recorded[different[0]]}")
        print(f"  now      {found[different[0]]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
