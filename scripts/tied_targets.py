"""What decides the leave-one-out test targets of a prepared dataset: how many users' test and
validation events share one timestamp (for them the order of events at one instant, not
time, says which item is the target), and how many test items the user had already consumed
(the protocol excludes seen items, so such a target is always a miss, for every model).

    .venv/bin/python scripts/tied_targets.py DATASET...

DATASET: prepared datasets (`evorec data prepare`). Prints a table, one row per dataset.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from evorec.data.artifacts import DatasetLayout


def tied_targets(layout: DatasetLayout) -> tuple[int, int, int]:
    """(users with a test event, those whose test and validation events share a time, those
    whose test item is among their earlier events)."""
    events = pd.read_parquet(
        layout.events, columns=["user_index", "item_index", "timestamp", "split_loo"]
    )
    held = events[events["split_loo"] != "train"].pivot_table(
        index="user_index", columns="split_loo", values="timestamp", aggfunc="first"
    )
    held = held.dropna(subset=["test", "valid"])
    tests = events[events["split_loo"] == "test"].set_index("user_index")["item_index"]
    earlier = events[events["split_loo"] != "test"]
    seen = earlier.merge(tests.rename("target"), left_on="user_index", right_index=True)
    repeats = seen.loc[seen["item_index"] == seen["target"], "user_index"].nunique()
    return len(held), int((held["test"] == held["valid"]).sum()), int(repeats)


def main(paths: list[str]) -> None:
    columns = ["dataset", "users with a test event", "test and validation at one time"]
    print("| " + " | ".join([*columns, "test item seen before"]) + " |")
    print("|---|---|---|---|")
    for path in paths:
        users, tied, repeats = tied_targets(DatasetLayout(Path(path)))
        share = max(users, 1)
        print(
            f"| {Path(path).name} | {users:,} | {tied:,} ({tied / share:.0%}) |"
            f" {repeats:,} ({repeats / share:.1%}) |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
