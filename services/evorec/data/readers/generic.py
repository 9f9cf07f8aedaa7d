"""Any export of interactions: CSV, JSON lines or Parquet, with a column mapping.

The mapping names which column holds the user, the item and the time (required) and,
optionally, the event type, a value (rating) and the user's text. An optional item file
beside it names the item, its title, text and categories (separated by `|`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from pandas.api.typing import NaTType

from evorec.data.readers.delimited import csv_header, csv_rows, decoded_lines
from evorec.data.schema import (
    EVENT_TYPES,
    DataError,
    ParseErrors,
    RawDataset,
    events_frame,
    items_frame,
)

SUFFIXES = (".csv", ".jsonl", ".parquet")
# The file types that may also come gzipped (`events.csv.gz`).
GZIPPED = (".csv", ".jsonl")
TimestampUnit = Literal["auto", "s", "ms", "iso"]


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column holds each field; None: the field is absent."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    event_type: str | None = "event_type"
    value: str | None = "value"
    text: str | None = "text"
    # The event type of every row when no column holds one.
    default_event_type: str = "view"
    # auto: numbers are Unix seconds, other text is an ISO 8601 date and time.
    timestamp_unit: TimestampUnit = "auto"
    item_title: str = "title"
    item_text: str = "text"
    item_categories: str = "categories"

    @classmethod
    def parse(cls, pairs: list[str]) -> ColumnMapping:
        """From `field=column` pairs, as given on the command line."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for pair in pairs:
            key, sep, column = pair.partition("=")
            if not sep or key not in known:
                raise DataError(
                    f"bad mapping {pair!r}: expected FIELD=COLUMN, FIELD one of {sorted(known)}"
                )
            values[key] = column or None
        # Checked here, once: an unknown value would make every row fail to parse instead.
        choices = {"timestamp_unit": get_args(TimestampUnit), "default_event_type": EVENT_TYPES}
        for key, valid in choices.items():
            if key in values and values[key] not in valid:
                raise DataError(
                    f"bad mapping {key}={values[key] or ''}: use one of {', '.join(valid)}"
                )
        return cls(**values)


def file_type(path: Path) -> str:
    """`.csv` for `export.2024-01.csv.gz`: the last suffix before `.gz`, as names may hold
    other dots."""
    return Path(path.stem).suffix if path.suffix == ".gz" else path.suffix


def dataset_name(path: Path) -> str:
    """The name of the dataset in an export: the file's name without its type (`export` of
    `export.csv.gz`), or its folder's for a file named `events`, as in a folder of
    `events.*` and `items.*`. From the resolved path: `export.csv` or `./events.csv` given
    relative to the working folder still have a name."""
    resolved = path.resolve()
    stem = resolved.name.removesuffix(".gz").removesuffix(file_type(resolved))
    return resolved.parent.name if stem == "events" else stem


def _rows(path: Path, errors: ParseErrors) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of each row of a CSV, JSON-lines or Parquet file."""
    suffix = file_type(path)
    if suffix == ".csv":
        header = csv_header(path)
        for number, values in csv_rows(path, len(header), errors):
            yield number, dict(zip(header, values, strict=True))
    elif suffix in (".jsonl", ".json"):  # `.json` with a mapping: JSON lines, as Amazon's
        for number, line in decoded_lines(path, errors):
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # not JSON, nested too deep, too many digits
                errors.add("not valid JSON", f"{path.name}:{number}")
                continue
            if not isinstance(record, dict):
                errors.add("not a JSON object", f"{path.name}:{number}")
                continue
            yield number, record
    elif suffix == ".parquet":
        for index, record in enumerate(pd.read_parquet(path).to_dict("records"), start=1):
            yield index, {str(key): value for key, value in record.items()}
    else:
        raise DataError(f"{path.name}: unsupported file type (use {', '.join(SUFFIXES)})")


def _text(value: Any) -> str:
    # NaT: a missing time in a Parquet datetime column (str() would make it "NaT").
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def parse_timestamp(value: Any, unit: TimestampUnit) -> float | None:
    """Unix seconds; NaN when empty; None when the value is not a time."""
    text = _text(value)
    if not text:
        return float("nan")
    if unit in ("auto", "s", "ms"):
        try:
            number = float(text)
        except ValueError:
            if unit != "auto":
                return None
        else:
            return number / 1000 if unit == "ms" else number
    try:
        # NaT (not a Timestamp, whatever the stubs say) for "NaT" or "nan": a missing time.
        stamp: pd.Timestamp | NaTType = pd.Timestamp(text)
    except (ValueError, TypeError):
        return None
    if isinstance(stamp, NaTType):
        return float("nan")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return float(stamp.timestamp())


def read_generic(
    events_path: Path, mapping: ColumnMapping, items_path: Path | None = None
) -> RawDataset:
    """Reads an event file (and an item file) through `mapping`."""
    if not events_path.exists():
        raise DataError(f"no such file: {events_path}")
    errors = ParseErrors()
    columns: dict[str, list[Any]] = {
        k: [] for k in ("user", "item", "time", "kind", "value", "text", "line")
    }
    for number, record in _rows(events_path, errors):
        where = f"{events_path.name}:{number}"
        missing = [c for c in (mapping.user, mapping.item) if c not in record]
        if missing:
            errors.add(f"no column {missing[0]!r}", where)
            continue
        time = parse_timestamp(record.get(mapping.timestamp), mapping.timestamp_unit)
        kind = _text(record.get(mapping.event_type)) if mapping.event_type else ""
        kind = kind.lower() or mapping.default_event_type
        raw_value = _text(record.get(mapping.value)) if mapping.value else ""
        try:
            value = float(raw_value) if raw_value else float("nan")
        except ValueError:
            value = None
        if time is None or value is None:
            errors.add("timestamp or value is not valid", where)
            continue
        if kind not in EVENT_TYPES:
            errors.add("unknown event type", where)
            continue
        columns["user"].append(_text(record[mapping.user]))
        columns["item"].append(_text(record[mapping.item]))
        columns["time"].append(time)
        columns["kind"].append(kind)
        columns["value"].append(value)
        columns["text"].append(_text(record.get(mapping.text)) if mapping.text else "")
        columns["line"].append(number)
    events = events_frame(
        columns["user"], columns["item"], np.array(columns["time"]), columns["kind"],
        np.array(columns["value"]), columns["text"], columns["line"],
    )  # fmt: skip
    files = [events_path]
    items = items_frame([])
    if items_path is not None:
        files.append(items_path)
        ids, titles, texts, categories = [], [], [], []
        for number, record in _rows(items_path, errors):
            item_id = _text(record.get(mapping.item))
            if not item_id:
                errors.add("item without id", f"{items_path.name}:{number}")
                continue
            ids.append(item_id)
            titles.append(_text(record.get(mapping.item_title)))
            texts.append(_text(record.get(mapping.item_text)))
            raw = record.get(mapping.item_categories)
            listed = list(raw) if isinstance(raw, list | np.ndarray) else _text(raw).split("|")
            categories.append([c.strip() for c in listed if str(c).strip()])
        items = items_frame(ids, titles, texts, categories)
    return RawDataset(
        name=dataset_name(events_path),
        source_format="generic",
        events=events,
        items=items,
        files=files,
        parse_errors=errors,
    )
