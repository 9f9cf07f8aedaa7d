"""Cleaning an event log: what the domain expects before anything learns from it.

In order: drop rows missing a user, an item or a time; drop times outside a plausible range;
drop exact duplicates, then near duplicates (the same user, item and event type again within
a few seconds: a double click, a resubmitted form); optionally keep only ratings at or above a
threshold (explicit feedback read as implicit); k-core filtering (every user and item keeps at
least k events); a stable chronological order, where events at the same time keep their file
order; dense integer ids. Every drop is counted per reason in the data-quality report.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from evorec.data.schema import DataError, RawDataset

DAY = 86_400.0


@dataclass(frozen=True)
class CleaningOptions:
    """How strictly to clean; the defaults keep every plausible event."""

    # Events of the same user, item and type within this many seconds of the previous one
    # are near duplicates. With 0, only those at the same instant (one action recorded twice).
    near_duplicate_window_s: float = 5.0
    # Earliest accepted time (Unix seconds); the latest is now plus one day.
    min_timestamp: float = 0.0
    max_future_s: float = DAY
    # Keep only events whose value is at least this (None: keep all).
    rating_threshold: float | None = None
    # k-core: keep users and items with at least this many events (1: no filtering).
    min_user_events: int = 1
    min_item_events: int = 1
    # Stop with an error when more than this share of the input rows did not parse.
    max_bad_row_share: float = 0.05


@dataclass
class CleanDataset:
    """A clean, time-ordered event log with dense ids, and what cleaning did."""

    name: str
    # Sorted by time; columns of schema.EVENT_COLUMNS plus user_index (0-based) and
    # item_index (1-based: 0 is left for padding in the sequence models).
    events: pd.DataFrame
    # One row per item that has events, ordered by item_index; plus a `popularity` count.
    items: pd.DataFrame
    # The catalog's items with no events: their text still trains the word vectors.
    unused_items: pd.DataFrame
    report: dict[str, Any]


def _drop(events: pd.DataFrame, mask: Any, reason: str, dropped: dict[str, int]) -> pd.DataFrame:
    count = int(np.count_nonzero(mask))
    dropped[reason] = dropped.get(reason, 0) + count
    return events[~mask] if count else events


def k_core(events: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Removes users and items with too few events until every one left has enough."""
    while True:
        user_counts = events["user_id"].map(events["user_id"].value_counts())
        item_counts = events["item_id"].map(events["item_id"].value_counts())
        keep = (user_counts >= min_user) & (item_counts >= min_item)
        if keep.all():
            return events
        events = events[keep]


def sequence_length_stats(events: pd.DataFrame) -> dict[str, float]:
    lengths = events.groupby("user_index", sort=False).size().to_numpy()
    if lengths.size == 0:
        return {}
    quantiles = np.percentile(lengths, [25, 50, 75, 90])
    return {
        "min": int(lengths.min()),
        "p25": float(quantiles[0]),
        "median": float(quantiles[1]),
        "mean": round(float(lengths.mean()), 2),
        "p75": float(quantiles[2]),
        "p90": float(quantiles[3]),
        "max": int(lengths.max()),
    }


def clean(raw: RawDataset, options: CleaningOptions | None = None) -> CleanDataset:
    """Cleans `raw`; raises DataError when too much of it did not parse or nothing is left."""
    options = options or CleaningOptions()
    parsed = len(raw.events)
    bad = raw.parse_errors.total
    if bad and bad > options.max_bad_row_share * (parsed + bad):
        raise DataError(
            f"{bad} of {parsed + bad} rows did not parse (more than "
            f"{options.max_bad_row_share:.0%}); first: {raw.parse_errors.lines}"
        )
    dropped: dict[str, int] = {}
    events = raw.events
    events = _drop(
        events, (events["user_id"] == "") | (events["item_id"] == ""), "missing_id", dropped
    )
    events = _drop(events, events["timestamp"].isna(), "missing_timestamp", dropped)
    latest = time.time() + options.max_future_s
    out_of_range = (events["timestamp"] < options.min_timestamp) | (events["timestamp"] > latest)
    events = _drop(events, out_of_range, "timestamp_out_of_range", dropped)
    # Time first. Events at the same instant (Amazon's times are whole days) go in an order
    # drawn from their user and item, not the file's: a user's last event at a time is the
    # test target, and Amazon's files are grouped by item, so file order would choose the
    # targets and let sequence models learn it. Then the file, so that "first" below means
    # first in time, then in the file, for the repeats of one user and item.
    tie = pd.util.hash_pandas_object(events[["user_id", "item_id"]], index=False)
    events = (
        events.assign(_tie=tie.to_numpy())
        .sort_values(["timestamp", "_tie", "line"], kind="stable")
        .drop(columns="_tie")
    )
    exact = events.duplicated(["user_id", "item_id", "timestamp", "event_type", "value", "text"])
    events = _drop(events, exact, "exact_duplicate", dropped)
    gaps = events.groupby(["user_id", "item_id", "event_type"], sort=False)["timestamp"].diff()
    window = max(options.near_duplicate_window_s, 0.0)
    events = _drop(events, gaps <= window, "near_duplicate", dropped)
    if options.rating_threshold is not None:
        low = ~(events["value"] >= options.rating_threshold)
        events = _drop(events, low, "below_rating_threshold", dropped)
    before_core = len(events)
    events = k_core(events, options.min_user_events, options.min_item_events)
    dropped["k_core"] = before_core - len(events)
    if events.empty:
        raise DataError(f"no events left after cleaning {raw.name}: dropped {dropped}")

    events = events.reset_index(drop=True)
    user_codes, _ = pd.factorize(events["user_id"])
    item_codes, item_ids = pd.factorize(events["item_id"])
    events = events.assign(
        user_index=user_codes.astype(np.int64), item_index=item_codes.astype(np.int64) + 1
    )
    items = _item_table(raw.items, pd.Index(item_ids), events)
    unused = raw.items[~raw.items["item_id"].isin(items["item_id"])].reset_index(drop=True)
    users, catalog_items = int(events["user_index"].nunique()), len(items)
    report = {
        "dataset": raw.name,
        "source_format": raw.source_format,
        "options": asdict(options),
        "rows_in": parsed + bad,
        "rows_not_parsed": raw.parse_errors.as_dict(),
        "dropped": dropped,
        "events_out": len(events),
        "users": users,
        "items": catalog_items,
        "catalog_items_without_events": len(unused),
        "density": round(len(events) / (users * catalog_items), 6),
        "event_types": {k: int(v) for k, v in events["event_type"].value_counts().items()},
        "time_span": [float(events["timestamp"].min()), float(events["timestamp"].max())],
        "sequence_length": sequence_length_stats(events),
    }
    return CleanDataset(raw.name, events, items, unused, report)


def _item_table(catalog: pd.DataFrame, item_ids: pd.Index, events: pd.DataFrame) -> pd.DataFrame:
    """The items that have events, in item_index order, with their catalog fields."""
    known = catalog.drop_duplicates("item_id").set_index("item_id")
    table = known.reindex(item_ids)
    for text in ("title", "text"):
        # As objects first: a column that reindexing left all missing is float, and filling
        # it with strings in place is deprecated in pandas.
        table[text] = table[text].astype(object).fillna("")
    table["categories"] = [c if isinstance(c, list) else [] for c in table["categories"]]
    table = table.reset_index(names="item_id")
    table.insert(1, "item_index", np.arange(1, len(table) + 1, dtype=np.int64))
    counts = events["item_index"].value_counts()
    table["popularity"] = table["item_index"].map(counts).fillna(0).astype(np.int64)
    return table
