"""Readers of interaction data, and the detection of which one a path needs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from evorec.data.readers.amazon import read_amazon
from evorec.data.readers.generic import GZIPPED, SUFFIXES, ColumnMapping, file_type, read_generic
from evorec.data.readers.movielens import read_atomic, read_dat, read_latest, read_ml100k
from evorec.data.schema import DataError, RawDataset

__all__ = ["ColumnMapping", "SourceFormat", "read_dataset"]

SourceFormat = Literal["auto", "movielens", "amazon", "generic"]


def _amazon_meta(reviews: Path) -> Path | None:
    """The `meta_<category>` file beside a review file, if there is one."""
    category = reviews.name.split(".json")[0].removesuffix("_5").removeprefix("reviews_")
    for candidate in (f"meta_{category}.json.gz", f"meta_{category}.json"):
        if (reviews.parent / candidate).exists():
            return reviews.parent / candidate
    return None


def _first(folder: Path, stem: str) -> Path | None:
    """`<stem>.csv`, `.jsonl`, `.parquet`, `.csv.gz` or `.jsonl.gz` in `folder`, if any."""
    names = [f"{stem}{s}" for s in SUFFIXES] + [f"{stem}{s}.gz" for s in GZIPPED]
    return next((folder / name for name in names if (folder / name).exists()), None)


def read_dataset(
    path: Path,
    source_format: SourceFormat = "auto",
    mapping: ColumnMapping | None = None,
    items: Path | None = None,
) -> RawDataset:
    """Reads a dataset from a folder (MovieLens layouts, or `events.*` + `items.*`) or a file
    (an Amazon review file, or a CSV/JSONL/Parquet export read through `mapping`)."""
    if not path.exists():
        raise DataError(f"no such file or folder: {path}")
    if path.is_dir():
        if source_format in ("auto", "movielens"):
            if (path / "u.data").exists():
                return read_ml100k(path)
            if any(path.glob("*.inter")):
                return read_atomic(path)
            if (path / "ratings.dat").exists():
                return read_dat(path)
            if (path / "ratings.csv").exists():
                return read_latest(path)
        if source_format in ("auto", "generic") and (events := _first(path, "events")):
            return read_generic(events, mapping or ColumnMapping(), items or _first(path, "items"))
        raise DataError(
            f"{path}: no known layout (u.data, *.inter, ratings.dat, ratings.csv, events.*); "
            "for Amazon data give the review file itself"
        )
    if source_format == "amazon" and mapping is not None:
        raise DataError("--map is for generic files: Amazon review files have fixed fields")
    # Amazon's files are `.json` or `.json.gz`; `.jsonl` is a generic export, and so is any
    # file given with a mapping, whatever its name.
    if source_format == "amazon" or (
        source_format == "auto" and mapping is None and file_type(path) == ".json"
    ):
        return read_amazon(path, items or _amazon_meta(path))
    return read_generic(path, mapping or ColumnMapping(), items)
