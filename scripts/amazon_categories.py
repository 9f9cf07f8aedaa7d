"""Which Amazon categories the model grid (scripts/compare_models.py) can use: for each review
file in `<datasets>/amazon/`, its reviews, the events `evorec data prepare`'s cleaning keeps,
what 5-core filtering leaves of them, and the items with catalog text (only a category with a
`meta_*` file has any; the others know an item by its reviews alone, so an item held out as new
has no text). Prints a Markdown table; no training.

    .venv/bin/python scripts/amazon_categories.py [--datasets ../shared/datasets]

The 2018 "5-core" files hold duplicate reviews; once cleaning removes them, some users and
items fall under 5 events, and `--min-user-events 5 --min-item-events 5` takes them out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evorec.data.cleaning import CleaningOptions, clean
from evorec.data.readers import read_dataset
from evorec.data.schema import DataError

ROOT = Path(__file__).resolve().parent.parent
CORE = 5
# Enough for the grid: a ranking over fewer items says little (with 10, the top 10 is the
# whole catalog), and fewer events leave a few hundred training sequences of 3 or 4 items.
MIN_EVENTS = 2000
MIN_ITEMS = 100


def census(review_file: Path) -> dict[str, int]:
    """Reviews, events after cleaning, and events, users, items and items with catalog text
    after 5-core filtering, of one review file (its metadata read when it has one)."""
    raw = read_dataset(review_file)
    cleaned = clean(raw, CleaningOptions())
    row = {"reviews": len(raw.events), "cleaned": len(cleaned.events)}
    try:
        core = clean(raw, CleaningOptions(min_user_events=CORE, min_item_events=CORE))
    except DataError:  # nothing left
        return row | {"events": 0, "users": 0, "items": 0, "with_text": 0}
    kept = core.items[core.items["item_index"].isin(core.events["item_index"])]
    return row | {
        "events": len(core.events),
        "users": int(core.events["user_index"].nunique()),
        "items": len(kept),
        "with_text": int((kept["text"] != "").sum()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = parser.parse_args(argv)
    files = sorted(
        p for p in (args.datasets / "amazon").glob("*.json*") if not p.name.startswith("meta_")
    )
    if not files:
        raise SystemExit(f"no Amazon review files in {args.datasets / 'amazon'}")
    print(
        f"| category | reviews | events after cleaning | after {CORE}-core: events | users "
        f"| items | items with catalog text | enough ({MIN_EVENTS:,} events, {MIN_ITEMS} items) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for review_file in files:
        row = census(review_file)
        enough = row["events"] >= MIN_EVENTS and row["items"] >= MIN_ITEMS
        cells = [f"{row[k]:,}" for k in ("reviews", "cleaned", "events", "users", "items")]
        cells += [f"{row['with_text']:,}", "yes" if enough else "no"]
        print(f"| {review_file.name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
