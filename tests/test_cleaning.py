"""Cleaning: each reason to drop an event, order, ids and the report."""

from __future__ import annotations

import numpy as np
import pytest

from evorec.data.cleaning import CleanDataset, CleaningOptions, clean
from evorec.data.schema import DataError, ParseErrors, RawDataset, events_frame, items_frame

NAN = float("nan")


def raw(
    events: list[tuple[str, str, float, str, float, str]], errors: ParseErrors | None = None
) -> RawDataset:
    users, items, times, kinds, values, texts = (list(c) for c in zip(*events, strict=True))
    return RawDataset(
        name="t",
        source_format="test",
        events=events_frame(users, items, np.array(times), kinds, np.array(values), texts),
        items=items_frame(["a", "b", "z"], ["A", "B", "Z"], None, [["x"], [], []]),
        files=[],
        parse_errors=errors or ParseErrors(),
    )


def test_each_drop_is_counted_under_its_reason() -> None:
    data = clean(
        raw(
            [
                ("u1", "a", 100, "view", NAN, ""),
                ("u1", "a", 100, "view", NAN, ""),  # exact duplicate
                ("u1", "a", 103, "view", NAN, ""),  # near duplicate (3 s later)
                ("u1", "a", 200, "view", NAN, ""),  # far enough: kept
                ("", "a", 300, "view", NAN, ""),  # missing user
                ("u2", "b", NAN, "view", NAN, ""),  # missing time
                ("u2", "b", -5, "view", NAN, ""),  # before 1970
                ("u2", "b", 9e12, "view", NAN, ""),  # far future
                ("u2", "b", 400, "rating", 4, ""),
            ]
        )
    )
    assert data.report["dropped"] == {
        "missing_id": 1,
        "missing_timestamp": 1,
        "timestamp_out_of_range": 2,
        "exact_duplicate": 1,
        "near_duplicate": 1,
        "k_core": 0,
    }
    assert list(data.events["timestamp"]) == [100, 200, 400]
    assert data.report["events_out"] == 3


def test_order_is_by_time_with_ties_not_in_file_order_and_ids_are_dense() -> None:
    """Events at one instant are ordered by their user and item, whatever the file's order:
    it decides which is a user's last (the test target), and a file grouped by item would
    otherwise decide it."""
    rows = [
        ("u2", "b", 50, "view", NAN, ""),
        ("u1", "z", 10, "view", NAN, ""),
        ("u1", "a", 50, "view", NAN, ""),
        ("u3", "a", 50, "view", NAN, ""),
        ("u1", "b", 50, "view", NAN, ""),
    ]
    forward, backward = clean(raw(rows)), clean(raw(rows[::-1]))

    def pairs(data: CleanDataset) -> list[tuple[str, str]]:
        return list(zip(data.events["user_id"], data.events["item_id"], strict=True))

    assert pairs(forward) == pairs(backward)
    assert pairs(forward)[0] == ("u1", "z")
    assert sorted(pairs(forward)) == sorted((u, i) for u, i, *_ in rows)
    users, items = (list(forward.events[c]) for c in ("user_id", "item_id"))
    user_number = {u: n for n, u in enumerate(dict.fromkeys(users))}
    item_number = {i: n + 1 for n, i in enumerate(dict.fromkeys(items))}  # 0 is padding
    assert list(forward.events["user_index"]) == [user_number[u] for u in users]
    assert list(forward.events["item_index"]) == [item_number[i] for i in items]
    assert list(forward.items["item_id"]) == list(item_number)
    catalog = forward.items.set_index("item_id")
    assert catalog.loc[["z", "a", "b"], "popularity"].tolist() == [1, 2, 2]
    assert catalog.loc["a", "categories"] == ["x"]


def test_rating_threshold_and_k_core() -> None:
    events = [("u1", "a", 1, "rating", 5, ""), ("u1", "b", 2, "rating", 2, ""),
              ("u2", "a", 3, "rating", 4, ""), ("u2", "b", 4, "rating", 5, ""),
              ("u3", "a", 5, "rating", 5, "")]  # fmt: skip
    data = clean(raw(events), CleaningOptions(rating_threshold=4))
    assert data.report["dropped"]["below_rating_threshold"] == 1
    assert len(data.events) == 4
    # 2-core: u3 has one event; once it goes, item b (one event left) goes, then u2 has one...
    cored = clean(raw(events), CleaningOptions(min_user_events=2, min_item_events=2))
    assert sorted(zip(cored.events["user_id"], cored.events["item_id"], strict=True)) == [
        ("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"),
    ]  # fmt: skip
    assert cored.report["dropped"]["k_core"] == 1


def test_report_describes_the_result() -> None:
    data = clean(raw([("u1", "a", 1, "view", NAN, ""), ("u1", "b", 2, "view", NAN, ""),
                      ("u2", "a", 3, "view", NAN, "")]))  # fmt: skip
    report = data.report
    assert (report["users"], report["items"], report["events_out"]) == (2, 2, 3)
    assert report["density"] == 0.75
    assert report["catalog_items_without_events"] == 1
    assert report["sequence_length"]["min"] == 1
    assert report["sequence_length"]["max"] == 2


def test_too_many_unparsed_rows_stop_with_the_first_lines() -> None:
    errors = ParseErrors()
    for line in range(2, 5):
        errors.add("expected 4 fields", f"u.data:{line}")
    with pytest.raises(DataError, match=r"3 of 4 rows did not parse .*u\.data:2"):
        clean(raw([("u1", "a", 1, "view", NAN, "")], errors))
    tolerant = clean(
        raw([("u1", "a", 1, "view", NAN, "")], errors), CleaningOptions(max_bad_row_share=0.8)
    )
    assert tolerant.report["rows_not_parsed"]["total"] == 3


def test_nothing_left_is_an_error() -> None:
    with pytest.raises(DataError, match="no events left"):
        clean(raw([("", "a", 1, "view", NAN, "")]))


@pytest.mark.filterwarnings("error::DeprecationWarning")
def test_an_empty_catalog_leaves_items_empty_text() -> None:
    """An empty catalog: reindexing leaves the text columns all missing (float), which are
    filled with empty strings without pandas' deprecated fill of a float column."""
    dataset = raw([("u1", "q", 100, "view", NAN, ""), ("u1", "r", 200, "view", NAN, "")])
    dataset.items = items_frame([], [], None, [])
    data = clean(dataset, CleaningOptions())
    assert list(data.items["title"]) == ["", ""]
    assert list(data.items["text"]) == ["", ""]
