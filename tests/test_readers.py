"""Readers of each public format and of generic exports, on small fixtures in those formats."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pandas as pd
import pytest

from evorec.data.readers import ColumnMapping, read_dataset
from evorec.data.schema import DataError

FIXTURES = Path(__file__).parent / "fixtures"


def rows(frame: pd.DataFrame, *columns: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in frame[list(columns)].itertuples(index=False)]


def test_ml100k_original_files() -> None:
    data = read_dataset(FIXTURES / "ml-100k")
    assert data.source_format == "movielens-100k"
    assert rows(data.events, "user_id", "item_id", "value", "timestamp", "line") == [
        ("1", "10", 4.0, 881250949.0, 1),
        ("1", "20", 5.0, 881250950.0, 2),
        ("2", "10", 3.0, 891717742.0, 3),
        ("3", "20", 1.0, 878887116.0, 6),
    ]
    assert set(data.events["event_type"]) == {"rating"}
    assert data.parse_errors.counts == {
        "expected 4 fields": 1,
        "rating or timestamp is not a number": 1,
    }
    assert data.parse_errors.lines == {
        "expected 4 fields": ["u.data:4"],
        "rating or timestamp is not a number": ["u.data:5"],
    }
    assert rows(data.items, "item_id", "title", "categories") == [
        ("10", "Toy Story", ["Animation", "Children's", "Comedy"]),
        ("20", "Cité des enfants perdus, La", ["Drama", "Sci-Fi"]),
        ("30", "Heat", ["Action", "Crime", "Thriller"]),
    ]


def test_recbole_atomic_files() -> None:
    data = read_dataset(FIXTURES / "atomic")
    assert (data.name, data.source_format) == ("mini", "recbole-atomic")
    assert rows(data.events, "user_id", "item_id", "value", "line") == [
        ("1", "10", 4.0, 2),
        ("2", "10", 3.0, 3),
        ("2", "20", 5.0, 4),
    ]
    assert rows(data.items, "item_id", "title", "categories") == [
        ("10", "Toy Story", ["Animation", "Comedy"]),
        ("20", "Heat", ["Action", "Crime"]),
    ]


def test_ml1m_dat_files_in_latin1() -> None:
    data = read_dataset(FIXTURES / "ml-1m")
    assert data.name == "ml-1m"
    assert len(data.events) == 3
    assert data.parse_errors.lines == {"rating or timestamp is not a number": ["ratings.dat:4"]}
    assert rows(data.items, "title", "categories") == [
        ("Toy Story", ["Animation", "Children's", "Comedy"]),
        ("Señorita", ["Drama"]),
    ]


def test_ml_latest_csv_with_tags_as_user_text() -> None:
    data = read_dataset(FIXTURES / "ml-latest-small")
    tags = data.events[data.events["event_type"] == "tag"]
    assert rows(tags, "user_id", "item_id", "text") == [
        ("2", "10", "funny"),
        ("2", "20", "heist, classic"),
    ]
    assert (data.events["event_type"] == "rating").sum() == 3
    assert rows(data.items, "title", "categories") == [
        ("American President, The", ["Comedy", "Drama", "Romance"]),
        ("Heat", ["Action", "Crime", "Thriller"]),
        ("Empty", []),
    ]


@pytest.mark.parametrize("gzipped", [False, True])
def test_amazon_reviews_with_2014_and_2018_metadata(tmp_path: Path, gzipped: bool) -> None:
    for name in ("Tools_5.json", "meta_Tools.json"):
        source = FIXTURES / "amazon" / name
        if gzipped:
            with source.open("rb") as raw, gzip.open(tmp_path / f"{name}.gz", "wb") as packed:
                shutil.copyfileobj(raw, packed)
        else:
            shutil.copy(source, tmp_path / name)
    reviews = "Tools_5.json.gz" if gzipped else "Tools_5.json"
    data = read_dataset(tmp_path / reviews)
    assert (data.name, data.source_format) == ("Tools", "amazon-reviews")
    assert rows(data.events, "user_id", "item_id", "value", "text", "line") == [
        ("U1", "A1", 5.0, "Great chisel. Sharp and sturdy chisel.", 1),
        ("U2", "A1", 4.0, "Good. Works well.", 2),
        ("U2", "A1", 4.0, "Good. Works well.", 3),
        ("U1", "A2", 3.0, "Okay hammer", 4),
        ("U3", "A3", 5.0, "Saw. Best saw I own.", 6),
    ]
    # No unixReviewTime: the reviewTime date is used.
    assert data.events["timestamp"].iloc[3] == pd.Timestamp("2015-01-02", tz="UTC").timestamp()
    assert data.parse_errors.lines == {"not a JSON object": [f"{reviews}:5"]}
    assert rows(data.items, "item_id", "title", "text", "categories") == [
        ("A1", "Wood Chisel Set", "Four sharp chisels for woodworking",
         ["Tools & Home Improvement", "Hand Tools", "Chisels"]),
        ("A2", "Claw Hammer", "A 16 oz claw hammer",
         ["Tools & Home Improvement", "Hand Tools", "Hammers"]),
        # An HTML fragment instead of a title: no title, the description is the text.
        ("A3", "", "Cordless circular saw", ["Tools & Home Improvement", "Power Tools", "Saws"]),
        ("A9", "Tape Measure", "25 ft tape measure", ["Tools & Home Improvement", "Measuring"]),
    ]  # fmt: skip


def test_generic_csv_through_a_column_mapping() -> None:
    mapping = ColumnMapping.parse(
        [
            "user=uid",
            "item=movie",
            "timestamp=when",
            "event_type=action",
            "value=stars",
            "text=comment",
        ]
    )
    data = read_dataset(FIXTURES / "generic" / "events.csv", mapping=mapping,
                        items=FIXTURES / "generic" / "items.jsonl")  # fmt: skip
    assert rows(data.events, "user_id", "item_id", "timestamp", "event_type", "value", "text") == [
        ("alice", "m1", 1614852000.0, "view", pytest.approx(float("nan"), nan_ok=True), ""),
        ("alice", "m2", 1614852000.0, "rating", 4.0, ""),
        ("bob", "m1", 1614947400.0, "review", 5.0, "Loved it, really"),
    ]
    assert data.parse_errors.lines == {
        "timestamp or value is not valid": ["events.csv:5"],
        "unknown event type": ["events.csv:6"],
        "not valid JSON": ["items.jsonl:3"],
    }
    assert rows(data.items, "item_id", "categories") == [("m1", ["Drama", "Comedy"]), ("m2", [])]


def test_generic_parquet_and_jsonl(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["a", "b"],
            "item_id": ["x", "y"],
            "timestamp": [1_600_000_000_000, 1_600_000_001_000],
        }
    )
    frame.to_parquet(tmp_path / "events.parquet")
    mapping = ColumnMapping(timestamp_unit="ms", event_type=None, value=None, text=None)
    data = read_dataset(tmp_path / "events.parquet", mapping=mapping)
    assert rows(data.events, "user_id", "timestamp", "event_type") == [
        ("a", 1_600_000_000.0, "view"),
        ("b", 1_600_000_001.0, "view"),
    ]
    frame.assign(timestamp=[1, 2]).to_json(tmp_path / "e.jsonl", orient="records", lines=True)
    assert len(read_dataset(tmp_path / "e.jsonl").events) == 2


def test_wrong_encoding_is_counted_per_line(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_bytes(
        b"user_id,item_id,timestamp\nu1,i1,1\nu\xff,i2,2\nu2,i3,3\n"
    )
    data = read_dataset(tmp_path)
    assert len(data.events) == 2
    assert data.parse_errors.lines == {"not valid utf-8": ["events.csv:3"]}


def test_a_quoted_csv_field_may_hold_newlines_and_rows_keep_their_line_numbers(
    tmp_path: Path,
) -> None:
    (tmp_path / "events.csv").write_text(
        'user_id,item_id,timestamp,text\nu1,i1,1,"two\nlines"\nu2,i2,oops,x\nu3,i3,3,"a, b"\n'
    )
    mapping = ColumnMapping.parse(["text=text"])
    data = read_dataset(tmp_path / "events.csv", mapping=mapping)
    assert data.events["text"].tolist() == ["two\nlines", "a, b"]
    assert data.events["line"].tolist() == [2, 5]
    assert data.parse_errors.lines == {"timestamp or value is not valid": ["events.csv:4"]}


def test_unknown_layouts_and_mappings_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no known layout"):
        read_dataset(tmp_path)
    with pytest.raises(DataError, match="no such file or folder"):
        read_dataset(tmp_path / "absent")
    with pytest.raises(DataError, match="bad mapping 'usr=uid'"):
        ColumnMapping.parse(["usr=uid"])
