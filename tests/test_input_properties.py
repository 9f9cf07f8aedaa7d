"""Properties of what reads and shapes outside input, checked on generated input (hypothesis):
text normalization, cleaning, and the readers.

Each property is one the code promises and could break: normalization is idempotent on its
own tokens and deterministic; cleaning leaves events in time order, without repeats, inside
the time range, with dense ids and its k-core; a reader either reads a file or raises
DataError, whatever bytes the file holds, and gives back what a well-formed file says.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evorec.data.cleaning import CleaningOptions, clean
from evorec.data.readers import ColumnMapping, read_dataset
from evorec.data.schema import EVENT_TYPES, DataError, RawDataset, events_frame, items_frame
from evorec.preprocess.text import MAX_TOKENS, TextOptions, normalize

QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text with what user text holds: any letter, Han, markup and entity characters, digits,
# apostrophes, emoji, combining marks, NULs and right-to-left marks.
texts = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
        st.sampled_from(list("<>&;#/:.@[]()'\"\u0301\u202e\x00 中文推荐ßİﬁ①Ａ😀")),
    ),
    max_size=200,
)


@QUICK
@given(texts, st.booleans(), st.booleans(), st.integers(1, 50))
def test_normalization_is_idempotent_on_its_tokens_and_bounded(
    text: str, stopwords: bool, stem: bool, max_tokens: int
) -> None:
    options = TextOptions(remove_stopwords=stopwords, stem=False, max_tokens=max_tokens)
    first = normalize(text, options)
    assert normalize(text, options) == first
    assert len(first.tokens) <= max_tokens
    assert all(token and not any(c.isspace() for c in token) for token in first.tokens)
    again = normalize(" ".join(first.tokens), TextOptions(remove_stopwords=stopwords))
    assert again.tokens == first.tokens
    stemmed = normalize(text, TextOptions(remove_stopwords=stopwords, stem=stem))
    assert len(stemmed.tokens) <= MAX_TOKENS


users = st.sampled_from(["u1", "u2", "u3", "", " "])
items = st.sampled_from(["i1", "i2", "i3", "i4", ""])
times = st.one_of(
    st.floats(0, 2e9, allow_nan=False),
    st.sampled_from([float("nan"), -1.0, 1e12, 100.0, 103.0, 108.0]),
)
rows = st.tuples(
    users, items, times, st.sampled_from(EVENT_TYPES[:3]), st.sampled_from([1.0, 4.0, float("nan")])
)


@QUICK
# Deprecated pandas calls fail here, before pandas drops them (filling an all-missing
# catalog column with strings once did).
@pytest.mark.filterwarnings("error::DeprecationWarning")
@given(
    st.lists(rows, max_size=60),
    st.sampled_from([0.0, 5.0]),
    st.integers(1, 3),
    st.integers(1, 3),
)
# Found by this test: with the near-duplicate window off, one action recorded twice at the
# same instant with two values was kept twice.
@example([("u1", "i1", 0.0, "view", 1.0), ("u1", "i1", 0.0, "view", 4.0)], 0.0, 1, 1)
def test_cleaning_orders_dedups_bounds_and_cores(
    generated: list[tuple[str, str, float, str, float]],
    window: float,
    min_user: int,
    min_item: int,
) -> None:
    user, item, when, kind, value = (
        (list(c) for c in zip(*generated, strict=True)) if generated else ([], [], [], [], [])
    )
    raw = RawDataset(
        name="generated",
        source_format="generic",
        events=events_frame(
            user,
            item,
            np.array(when, dtype=float),
            kind,
            np.array(value, dtype=float),
            [""] * len(user),
            list(range(1, len(user) + 1)),
        ),
        items=items_frame([]),
        files=[],
    )
    options = CleaningOptions(
        near_duplicate_window_s=window, min_user_events=min_user, min_item_events=min_item
    )
    try:
        cleaned = clean(raw, options)
    except DataError:
        return
    events = cleaned.events
    stamps = events["timestamp"].to_numpy()
    assert np.all(np.diff(stamps) >= 0), "events out of time order"
    assert not events.duplicated(["user_id", "item_id", "event_type", "timestamp"]).any()
    assert (stamps >= 0).all()
    assert (stamps <= time.time() + options.max_future_s).all()
    assert (events["user_id"] != "").all()
    assert (events["item_id"] != "").all()
    assert (events["user_id"].value_counts() >= min_user).all()
    assert (events["item_id"].value_counts() >= min_item).all()
    assert sorted(events["item_index"].unique()) == list(range(1, events["item_id"].nunique() + 1))
    assert sorted(events["user_index"].unique()) == list(range(events["user_id"].nunique()))
    if window > 0:
        gaps = events.groupby(["user_id", "item_id", "event_type"])["timestamp"].diff()
        assert not (gaps <= window).any(), "a near duplicate was kept"
    report = cleaned.report
    assert report["rows_in"] - sum(report["dropped"].values()) == report["events_out"]


# A file a reader is given: bytes as found, under each name the readers recognize.
LAYOUTS = {
    "generic csv": "events.csv",
    "generic jsonl": "events.jsonl",
    "amazon": "reviews_Books.json",
    "ml-100k": "u.data",
    "ml-1m": "ratings.dat",
    "ml-latest": "ratings.csv",
    "atomic": "x.inter",
}
COMPANIONS = {"ml-100k": "u.item", "ml-1m": "movies.dat", "ml-latest": "movies.csv"}
line_parts = st.sampled_from(
    ["u1", "i1", "5", "881250949", "\t", "::", ",", "|", '"', "{", "}", "[", ":", "1e309",
     "-1", "nan", '"unixReviewTime": ', '"overall": ', '"reviewerID": "a"', "\n", "\xff",
     "2026-12-03T10:00:00", "99999999999999999999", "[[[[[[", "\x00", "NaT"]
)  # fmt: skip
contents = st.one_of(
    st.binary(max_size=300),
    st.lists(line_parts, max_size=40).map(lambda parts: "".join(parts).encode("utf-8", "replace")),
)


def read_bytes(layout: str, content: bytes, companion: bytes) -> RawDataset:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / LAYOUTS[layout]).write_bytes(content)
        if layout in COMPANIONS:
            (root / COMPANIONS[layout]).write_bytes(companion)
        target = root / LAYOUTS[layout] if layout.startswith(("generic", "amazon")) else root
        return read_dataset(target)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(LAYOUTS)), contents, contents)
def test_readers_read_or_raise_data_error_on_any_bytes(
    layout: str, content: bytes, companion: bytes
) -> None:
    try:
        raw = read_bytes(layout, content, companion)
    except DataError:
        return
    assert list(raw.events.columns)[:3] == ["user_id", "item_id", "timestamp"]


ids = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=12,
)
events_st = st.lists(
    st.tuples(ids, ids, st.integers(0, 2_000_000_000), st.sampled_from(EVENT_TYPES)),
    min_size=1,
    max_size=30,
)


@QUICK
@given(events_st, st.sampled_from(["csv", "jsonl"]))
def test_generic_readers_give_back_what_a_well_formed_file_says(
    events: list[tuple[str, str, int, str]], suffix: str
) -> None:
    buffer = io.StringIO()
    if suffix == "csv":
        writer = csv.writer(buffer)
        writer.writerow(["user_id", "item_id", "timestamp", "event_type"])
        writer.writerows(events)
    else:
        for user, item, when, kind in events:
            record = {"user_id": user, "item_id": item, "timestamp": when, "event_type": kind}
            buffer.write(json.dumps(record) + "\n")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"events.{suffix}"
        path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
        raw = read_dataset(path, "generic", ColumnMapping())
    assert raw.parse_errors.total == 0
    read = list(
        raw.events[["user_id", "item_id", "timestamp", "event_type"]].itertuples(
            index=False, name=None
        )
    )
    assert read == [(u.strip(), i.strip(), float(t), k) for u, i, t, k in events]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_file_nested_past_the_recursion_limit_is_a_parse_error(layout: str) -> None:
    content = ("[" * 100_000 + "\n").encode() + b'{"reviewerID": "a", "asin": "b"}\n'
    try:
        raw = read_bytes(layout, content, content)
    except DataError:
        return
    assert raw.parse_errors.total >= 1
