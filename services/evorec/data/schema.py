"""The shape every reader produces: one event table and one item table, in memory.

Events (one row per thing a user did):
  user_id, item_id: str; timestamp: float (Unix seconds, NaN when missing);
  event_type: str (one of EVENT_TYPES); value: float (NaN when none); text: str ("" when none);
  line: int (where the row came from, for the data-quality report).
Items (one row per catalog item): item_id, title, text: str; categories: list[str].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

# The lowercase names of evorec.v1.EventType (without the EVENT_TYPE_ prefix).
EVENT_TYPES = ("view", "click", "rating", "purchase", "review", "tag", "query")
EVENT_COLUMNS = ("user_id", "item_id", "timestamp", "event_type", "value", "text", "line")
ITEM_COLUMNS = ("item_id", "title", "text", "categories")
# How many offending line numbers a report keeps per reason; the count is always complete.
KEPT_LINE_NUMBERS = 20


def item_document(title: str, text: str, categories: Sequence[str]) -> str:
    """The text an item is known by, in preparation and when it is upserted later: title,
    description and categories."""
    return " ".join([title, text, *categories]).strip()


class DataError(Exception):
    """Input data that cannot be read at all (missing files, too many bad rows, no events)."""


@dataclass
class ParseErrors:
    """Rows that did not parse: a complete count per reason, the first line numbers of each."""

    counts: dict[str, int] = field(default_factory=dict)
    lines: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        kept = self.lines.setdefault(reason, [])
        if len(kept) < KEPT_LINE_NUMBERS:
            kept.append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: ParseErrors) -> None:
        for reason, count in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + count
            kept = self.lines.setdefault(reason, [])
            kept.extend(other.lines[reason][: KEPT_LINE_NUMBERS - len(kept)])

    def as_dict(self) -> dict[str, object]:
        return {"total": self.total, "counts": self.counts, "first_lines": self.lines}


@dataclass
class RawDataset:
    """What a reader read: events and items as found, plus what could not be parsed."""

    name: str
    source_format: str
    events: pd.DataFrame
    items: pd.DataFrame
    files: list[Path]
    parse_errors: ParseErrors = field(default_factory=ParseErrors)


def events_frame(
    user_id: list[str],
    item_id: list[str],
    timestamp: list[float] | np.ndarray,
    event_type: list[str] | str,
    value: list[float] | np.ndarray | float = np.nan,
    text: list[str] | str = "",
    line: list[int] | np.ndarray | None = None,
) -> pd.DataFrame:
    """An event table with the standard columns and dtypes."""
    count = len(user_id)
    return pd.DataFrame(
        {
            "user_id": pd.Series(user_id, dtype=str),
            "item_id": pd.Series(item_id, dtype=str),
            "timestamp": np.asarray(timestamp, dtype=np.float64),
            "event_type": event_type if isinstance(event_type, list) else [event_type] * count,
            "value": np.broadcast_to(np.asarray(value, dtype=np.float64), (count,)).copy(),
            "text": text if isinstance(text, list) else [text] * count,
            "line": np.arange(1, count + 1) if line is None else np.asarray(line, dtype=np.int64),
        },
        columns=list(EVENT_COLUMNS),
    )


def items_frame(
    item_id: list[str],
    title: list[str] | None = None,
    text: list[str] | None = None,
    categories: list[list[str]] | None = None,
) -> pd.DataFrame:
    """An item table with the standard columns."""
    count = len(item_id)
    return pd.DataFrame(
        {
            "item_id": pd.Series(item_id, dtype=str),
            "title": title if title is not None else [""] * count,
            "text": text if text is not None else [""] * count,
            "categories": categories if categories is not None else [[] for _ in range(count)],
        },
        columns=list(ITEM_COLUMNS),
    )


def empty_items() -> pd.DataFrame:
    return items_frame([])
