"""How many users' test and validation events (leave-one-out) share one timestamp: for them
the order of events at one instant, not time, says which item is the test target.

    .venv/bin/python scripts/tied_targets.py DATASET...

DATASET: prepared datasets (`evorec data prepare`). Prints, per dataset, the users with a
test event and how many of them have it at the time of their validation event.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from evorec.data.artifacts import DatasetLayout


def tied_targets(layout: DatasetLayout) -> tuple[int, int]:
    """(users with a test event, those whose test and validation events share a time)."""
    events = pd.read_parquet(layout.events, columns=["user_index", "timestamp", "split_loo"])
    held = events[events["split_loo"] != "train"].pivot_table(
        index="user_index", columns="split_loo", values="timestamp", aggfunc="first"
    )
    held = held.dropna(subset=["test", "valid"])
    return len(held), int((held["test"] == held["valid"]).sum())


def main(paths: list[str]) -> None:
    print("| dataset | users with a test event | test and validation at one time |")
    print("|---|---|---|")
    for path in paths:
        users, tied = tied_targets(DatasetLayout(Path(path)))
        print(f"| {Path(path).name} | {users:,} | {tied:,} ({tied / max(users, 1):.0%}) |")


if __name__ == "__main__":
    main(sys.argv[1:])
