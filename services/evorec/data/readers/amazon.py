"""Amazon review data, 2014 and 2018 releases (McAuley lab), gzipped or not.

A review file has one review per line (`reviewerID`, `asin`, `overall`, `unixReviewTime`,
`reviewText`, `summary`); each becomes a `review` event whose value is the rating and whose
text is the summary and the review. A `meta_*` file, when given, has one item per line
(`asin`, `title`, `description`, `category`, or the 2014 `categories`); the 2014 metadata is
written as Python literals rather than JSON, and in the 2018 release some titles are HTML
fragments rather than titles: those are dropped, and the description and categories are the
item's text.
"""

from __future__ import annotations

import ast
import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evorec.data.readers.delimited import decoded_lines
from evorec.data.schema import ParseErrors, RawDataset, events_frame, items_frame

_TAG = re.compile(r"<[^>]*>?")


def _parse_record(line: str) -> dict[str, Any] | None:
    """The line's object, as JSON or (2014 metadata) a Python literal; None where it is
    neither. Whatever the line holds (nesting past the recursion limit, integers past
    Python's digit limit, unhashable keys), this returns rather than raises."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        try:
            record = ast.literal_eval(line)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    return record if isinstance(record, dict) else None


def _number(value: object) -> float | None:
    """A JSON number as a float; None for anything else, and for an integer too large for a
    float."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _review_time(record: dict[str, Any]) -> float | None:
    value = record.get("unixReviewTime")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number(value)
    text = record.get("reviewTime")
    if isinstance(text, str):
        try:
            return datetime.strptime(text.strip(), "%m %d, %Y").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return None
    return float("nan")


def clean_title(title: object) -> str:
    """The title, or "" where it is an HTML fragment (2018 metadata) or not text."""
    if not isinstance(title, str) or "<" in title:
        return ""
    return " ".join(html.unescape(title).split())


def _joined(value: object) -> str:
    """The text of a string or of the strings in (nested) lists, in order; walked with a
    stack, so that nesting as deep as the parser allows cannot exhaust the recursion limit."""
    parts: list[str] = []
    pending = [value]
    while pending:
        current = pending.pop()
        if isinstance(current, str):
            parts.append(" ".join(html.unescape(_TAG.sub(" ", current)).split()))
        elif isinstance(current, list):
            pending.extend(reversed([v for v in current if v]))
    return " ".join(part for part in parts if part)


def _categories(record: dict[str, Any]) -> list[str]:
    category = record.get("category")
    if isinstance(category, list):
        return [html.unescape(c).strip() for c in category if isinstance(c, str) and c.strip()]
    nested = record.get("categories")  # 2014: a list of category paths
    if isinstance(nested, list) and nested and isinstance(nested[0], list):
        return [c.strip() for c in nested[0] if isinstance(c, str) and c.strip()]
    return []


def read_amazon(reviews: Path, meta: Path | None = None) -> RawDataset:
    """Reads a review file and, optionally, its metadata file."""
    errors = ParseErrors()
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    values: list[float] = []
    texts: list[str] = []
    lines: list[int] = []
    for number, line in decoded_lines(reviews, errors):
        where = f"{reviews.name}:{number}"
        record = _parse_record(line)
        if record is None:
            errors.add("not a JSON object", where)
            continue
        time = _review_time(record)
        rating = _number(record.get("overall", float("nan")))
        if time is None or rating is None:
            errors.add("rating or time is not valid", where)
            continue
        users.append(str(record.get("reviewerID") or "").strip())
        items.append(str(record.get("asin") or "").strip())
        times.append(time)
        values.append(rating)
        summary = str(record.get("summary") or "").strip()
        body = str(record.get("reviewText") or "").strip()
        texts.append(f"{summary}. {body}" if summary and body else summary or body)
        lines.append(number)
    events = events_frame(users, items, np.array(times), "review", np.array(values), texts, lines)
    files = [reviews]
    catalog = items_frame([])
    if meta is not None:
        files.append(meta)
        catalog = _read_meta(meta, errors)
    name = reviews.name.split(".json")[0].removesuffix("_5").removeprefix("reviews_")
    return RawDataset(
        name=name,
        source_format="amazon-reviews",
        events=events,
        items=catalog,
        files=files,
        parse_errors=errors,
    )


def _read_meta(meta: Path, errors: ParseErrors) -> pd.DataFrame:
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    categories: list[list[str]] = []
    seen: set[str] = set()
    for number, line in decoded_lines(meta, errors):
        record = _parse_record(line)
        if record is None or not record.get("asin"):
            errors.add("not an item record", f"{meta.name}:{number}")
            continue
        asin = str(record["asin"]).strip()
        if asin in seen:  # the 2018 metadata repeats some items verbatim
            continue
        seen.add(asin)
        ids.append(asin)
        titles.append(clean_title(record.get("title")))
        texts.append(_joined(record.get("description")))
        categories.append(_categories(record))
    return items_frame(ids, titles, texts, categories)
