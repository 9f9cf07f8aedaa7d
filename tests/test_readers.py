"""Readers of each public format and of generic exports, on small fixtures in those formats."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evorec.data.cleaning import clean
from evorec.data.readers import ColumnMapping, read_dataset
from evorec.data.readers.generic import parse_timestamp
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


EXPORT_ROWS = [{"uid": "u1", "sku": "i1", "ts": 1_600_000_000}, {"uid": "u2", "sku": "i2", "ts": 2}]
EXPORT_MAPPING = ColumnMapping.parse(["user=uid", "item=sku", "timestamp=ts"])


def write_jsonl(path: Path, records: list[dict[str, object]], prefix: bytes = b"") -> None:
    data = prefix + "".join(json.dumps(record) + "\n" for record in records).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


@pytest.mark.parametrize("name", ["export.jsonl", "export.jsonl.gz", "export.json"])
def test_a_jsonl_export_or_a_file_with_a_mapping_is_read_through_the_mapping(
    tmp_path: Path, name: str
) -> None:
    """Amazon's review files are `.json(.gz)`; a JSON-lines export, or any file given a
    mapping, is generic."""
    write_jsonl(tmp_path / name, EXPORT_ROWS)
    data = read_dataset(tmp_path / name, mapping=EXPORT_MAPPING)
    assert data.source_format == "generic"
    assert rows(data.events, "user_id", "item_id", "timestamp") == [
        ("u1", "i1", 1_600_000_000.0),
        ("u2", "i2", 2.0),
    ]
    with pytest.raises(DataError, match="--map is for generic files"):
        read_dataset(tmp_path / name, "amazon", EXPORT_MAPPING)


def test_a_jsonl_export_without_a_mapping_is_generic_too(tmp_path: Path) -> None:
    records = [{"user_id": "u1", "item_id": "i1", "timestamp": 5}]
    write_jsonl(tmp_path / "export.jsonl", records)
    assert read_dataset(tmp_path / "export.jsonl").source_format == "generic"


def test_a_nat_in_a_parquet_datetime_column_is_a_missing_timestamp(tmp_path: Path) -> None:
    frame = pd.DataFrame(EXPORT_ROWS).assign(
        ts=pd.to_datetime(["2020-09-13 12:26:40", None]), kind="view"
    )
    frame.to_parquet(tmp_path / "withnat.parquet")
    data = read_dataset(tmp_path / "withnat.parquet", mapping=EXPORT_MAPPING)
    assert data.events["timestamp"].iloc[0] == 1_600_000_000.0
    assert np.isnan(data.events["timestamp"].iloc[1])
    assert clean(data).report["dropped"]["missing_timestamp"] == 1


def test_the_text_nat_is_a_missing_timestamp() -> None:
    assert np.isnan(parse_timestamp("NaT", "iso"))  # type: ignore[arg-type]


def truncated_gzip(path: Path, text: str) -> None:
    whole = gzip.compress(text.encode())
    path.write_bytes(whole[: len(whole) // 2])


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("events.csv.gz", lambda p: truncated_gzip(p, "user_id,item_id,timestamp\n" * 500)),
        ("Beauty_5.json.gz", lambda p: truncated_gzip(p, '{"reviewerID": "u"}\n' * 500)),
        ("events.csv.gz", lambda p: p.write_text("user_id,item_id,timestamp\nu,i,1\n")),
        ("e.jsonl.gz", lambda p: p.write_bytes(gzip.compress(b'{"a": 1}\n' * 100)[:-30])),
    ],
)
def test_a_truncated_or_false_gzip_file_is_a_data_error_that_names_it(
    tmp_path: Path, name: str, write: Callable[[Path], None]
) -> None:
    write(tmp_path / name)
    with pytest.raises(DataError, match=f"{tmp_path / name}: truncated or not gzip"):
        read_dataset(tmp_path / name)


def test_a_dotted_name_and_a_gzipped_folder_export_are_read(tmp_path: Path) -> None:
    pd.DataFrame(EXPORT_ROWS).to_csv(tmp_path / "export.2024-01.csv.gz", index=False)
    assert len(read_dataset(tmp_path / "export.2024-01.csv.gz", mapping=EXPORT_MAPPING).events) == 2
    record = {"user_id": "u", "item_id": "i", "timestamp": 1}
    for name in ("events.csv.gz", "events.jsonl.gz"):
        folder = tmp_path / name.split(".")[1]
        folder.mkdir()
        if name.startswith("events.csv"):
            pd.DataFrame([record]).to_csv(folder / name, index=False)
        else:
            write_jsonl(folder / name, [record])
        data = read_dataset(folder)
        assert data.files == [folder / name]
        assert len(data.events) == 1


def test_a_byte_order_mark_does_not_cost_a_jsonl_file_its_first_row(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "e.jsonl", EXPORT_ROWS, prefix="\ufeff".encode())
    data = read_dataset(tmp_path / "e.jsonl", mapping=EXPORT_MAPPING)
    assert data.events["user_id"].tolist() == ["u1", "u2"]
    assert data.parse_errors.lines == {}


@pytest.mark.parametrize("pair", ["timestamp_unit=seconds", "default_event_type=visit"])
def test_a_mapped_value_that_is_not_known_is_refused_with_the_valid_ones(pair: str) -> None:
    with pytest.raises(DataError, match=f"bad mapping {pair}: use one of") as raised:
        ColumnMapping.parse([pair])
    assert "\n" not in str(raised.value)
    assert ColumnMapping.parse(["timestamp_unit=ms"]).timestamp_unit == "ms"


def test_a_dataset_is_named_from_its_resolved_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative file or `.` still names the dataset, and two exports in one folder do not
    share a name (and so an output folder)."""
    folder = tmp_path / "shop"
    folder.mkdir()
    frame = pd.DataFrame(EXPORT_ROWS).rename(
        columns={"uid": "user_id", "sku": "item_id", "ts": "timestamp"}
    )
    for name in ("events.csv", "export.csv", "export.2024-01.csv.gz"):
        frame.to_csv(folder / name, index=False)
    monkeypatch.chdir(folder)
    names = [
        read_dataset(Path(p)).name
        for p in (".", "events.csv", "export.csv", "export.2024-01.csv.gz")
    ]
    assert names == ["shop", "shop", "export", "export.2024-01"]
