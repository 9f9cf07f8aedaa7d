"""MovieLens, in each of its published layouts.

- ml-100k as GroupLens ships it (`u.data`, tab-separated; `u.item`, pipe-separated, Latin-1,
  19 genre flags) and in RecBole's atomic files (`*.inter`, `*.item`, typed headers).
- ml-1m and ml-10m (`ratings.dat`, `movies.dat`, `tags.dat`; fields separated by `::`).
- ml-latest and ml-latest-small (`ratings.csv`, `movies.csv`, `tags.csv`, quoted CSV).

Ratings become `rating` events with the rating as value; tags become `tag` events whose text
is the tag, the users' own words about the movie.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from evorec.data.readers.delimited import csv_rows, parse_number, split_lines
from evorec.data.schema import DataError, ParseErrors, RawDataset, events_frame, items_frame

# u.genre of ml-100k, in flag order.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


def _title_without_year(title: str) -> str:
    return _YEAR.sub("", title).strip()


class _Events:
    """Accumulates event columns while lines are read."""

    def __init__(self) -> None:
        self.user: list[str] = []
        self.item: list[str] = []
        self.time: list[float] = []
        self.kind: list[str] = []
        self.value: list[float] = []
        self.text: list[str] = []
        self.line: list[int] = []

    def add(
        self, user: str, item: str, time: float, kind: str, value: float, text: str, line: int
    ) -> None:
        self.user.append(user.strip())
        self.item.append(item.strip())
        self.time.append(time)
        self.kind.append(kind)
        self.value.append(value)
        self.text.append(text)
        self.line.append(line)

    def add_rating_fields(
        self, fields: list[str], number: int, where: str, errors: ParseErrors
    ) -> None:
        """Adds `user, item, rating, timestamp`, counting fields that are not numbers."""
        rating, timestamp = parse_number(fields[2]), parse_number(fields[3])
        if rating is None or timestamp is None:
            errors.add("rating or timestamp is not a number", where)
            return
        self.add(fields[0], fields[1], timestamp, "rating", rating, "", number)

    def add_tag_fields(
        self, fields: list[str], number: int, where: str, errors: ParseErrors
    ) -> None:
        """Adds `user, item, tag, timestamp` as a tag event."""
        timestamp = parse_number(fields[3])
        if timestamp is None:
            errors.add("timestamp is not a number", where)
            return
        self.add(fields[0], fields[1], timestamp, "tag", float("nan"), fields[2].strip(), number)

    def frame(self) -> pd.DataFrame:
        return events_frame(
            self.user, self.item, self.time, self.kind, self.value, self.text, self.line
        )


def read_ml100k(folder: Path) -> RawDataset:
    """GroupLens's original ml-100k files: `u.data` and `u.item`."""
    errors = ParseErrors()
    events = _Events()
    for number, fields in split_lines(folder / "u.data", "\t", 4, errors):
        events.add_rating_fields(fields, number, f"u.data:{number}", errors)
    ids, titles, categories = [], [], []
    for number, fields in split_lines(folder / "u.item", "|", 24, errors, encoding="latin-1"):
        flags = fields[5:]
        if any(flag not in ("0", "1") for flag in flags):
            errors.add("genre flag is not 0 or 1", f"u.item:{number}")
            continue
        ids.append(fields[0])
        titles.append(_title_without_year(fields[1]))
        categories.append([g for g, flag in zip(ML100K_GENRES, flags, strict=True) if flag == "1"])
    return RawDataset(
        name="ml-100k",
        source_format="movielens-100k",
        events=events.frame(),
        items=items_frame(ids, titles, None, categories),
        files=[folder / "u.data", folder / "u.item"],
        parse_errors=errors,
    )


def _atomic_header(path: Path) -> list[str]:
    """Column names of a RecBole atomic file, without their `:type` suffixes."""
    with path.open("rb") as handle:
        first = handle.readline()
    try:
        line = first.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path.name}: the header line is not valid utf-8") from error
    return [name.split(":", 1)[0] for name in line.rstrip("\r\n").split("\t")]


def read_atomic(folder: Path) -> RawDataset:
    """RecBole's atomic files: `<name>.inter` and, when present, `<name>.item`."""
    inters = sorted(folder.glob("*.inter"))
    if len(inters) != 1:
        raise DataError(f"expected one .inter file in {folder}, found {len(inters)}")
    inter = inters[0]
    errors = ParseErrors()
    header = _atomic_header(inter)
    missing = {"user_id", "item_id", "timestamp"} - set(header)
    if missing:
        raise DataError(f"{inter.name} lacks columns: {', '.join(sorted(missing))}")
    column = {name: index for index, name in enumerate(header)}
    rating = column.get("rating")
    events = _Events()
    for number, fields in split_lines(inter, "\t", len(header), errors, skip_header=True):
        where = f"{inter.name}:{number}"
        timestamp = parse_number(fields[column["timestamp"]])
        value = parse_number(fields[rating]) if rating is not None else float("nan")
        if timestamp is None or value is None:
            errors.add("rating or timestamp is not a number", where)
            continue
        kind = "rating" if rating is not None else "view"
        events.add(
            fields[column["user_id"]], fields[column["item_id"]], timestamp, kind, value, "", number
        )
    files = [inter]
    item_path = inter.with_suffix(".item")
    items = items_frame([])
    if item_path.exists():
        files.append(item_path)
        item_header = _atomic_header(item_path)
        item_column = {name: index for index, name in enumerate(item_header)}
        if "item_id" not in item_column:
            raise DataError(f"{item_path.name} lacks columns: item_id")
        title_column = next((c for c in ("movie_title", "title") if c in item_column), None)
        class_column = next((c for c in ("class", "genre", "categories") if c in item_column), None)
        ids, titles, categories = [], [], []
        for _, fields in split_lines(item_path, "\t", len(item_header), errors, skip_header=True):
            ids.append(fields[item_column["item_id"]])
            titles.append(fields[item_column[title_column]] if title_column else "")
            categories.append(fields[item_column[class_column]].split() if class_column else [])
        items = items_frame(ids, titles, None, categories)
    return RawDataset(
        name=inter.stem,
        source_format="recbole-atomic",
        events=events.frame(),
        items=items,
        files=files,
        parse_errors=errors,
    )


def read_dat(folder: Path) -> RawDataset:
    """ml-1m and ml-10m: `ratings.dat`, `movies.dat` and (ml-10m) `tags.dat`."""
    errors = ParseErrors()
    events = _Events()
    # ml-1m is Latin-1; ml-10m is UTF-8. Latin-1 decodes any byte, so try UTF-8 first.
    encoding = _encoding_of(folder / "movies.dat")
    for number, fields in split_lines(folder / "ratings.dat", "::", 4, errors):
        events.add_rating_fields(fields, number, f"ratings.dat:{number}", errors)
    files = [folder / "ratings.dat", folder / "movies.dat"]
    tags = folder / "tags.dat"
    if tags.exists():
        files.append(tags)
        for number, fields in split_lines(tags, "::", 4, errors, encoding=encoding):
            events.add_tag_fields(fields, number, f"tags.dat:{number}", errors)
    ids, titles, categories = [], [], []
    for _, fields in split_lines(folder / "movies.dat", "::", 3, errors, encoding=encoding):
        ids.append(fields[0])
        titles.append(_title_without_year(fields[1]))
        categories.append(_genres(fields[2]))
    name = "ml-10m" if tags.exists() else "ml-1m"
    return RawDataset(
        name=name,
        source_format="movielens-dat",
        events=events.frame(),
        items=items_frame(ids, titles, None, categories),
        files=files,
        parse_errors=errors,
    )


def read_latest(folder: Path) -> RawDataset:
    """ml-latest and ml-latest-small: `ratings.csv`, `movies.csv` and `tags.csv`."""
    errors = ParseErrors()
    events = _Events()
    for number, fields in csv_rows(folder / "ratings.csv", 4, errors):
        events.add_rating_fields(fields, number, f"ratings.csv:{number}", errors)
    files = [folder / "ratings.csv", folder / "movies.csv"]
    tags = folder / "tags.csv"
    if tags.exists():
        files.append(tags)
        for number, fields in csv_rows(tags, 4, errors):
            events.add_tag_fields(fields, number, f"tags.csv:{number}", errors)
    ids, titles, categories = [], [], []
    for _, fields in csv_rows(folder / "movies.csv", 3, errors):
        ids.append(fields[0])
        titles.append(_title_without_year(fields[1]))
        categories.append(_genres(fields[2]))
    return RawDataset(
        name=folder.resolve().name,
        source_format="movielens-csv",
        events=events.frame(),
        items=items_frame(ids, titles, None, categories),
        files=files,
        parse_errors=errors,
    )


def _genres(field: str) -> list[str]:
    return [g for g in field.strip().split("|") if g and g != "(no genres listed)"]


def _encoding_of(path: Path) -> str:
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"
