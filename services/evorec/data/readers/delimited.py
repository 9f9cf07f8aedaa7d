"""Reading of delimited text files, counting every row that does not parse.

The public formats are small enough to read this way, and doing it by hand (rather than with
a CSV engine that skips bad rows silently) is what lets the report name each bad line.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, cast

from evorec.data.schema import DataError, ParseErrors

# What a byte that is not UTF-8 decodes to.
_UNDECODABLE = "\ufffd"


def open_text(path: Path) -> IO[bytes]:
    """Opens a file for reading as bytes, gunzipping `.gz` files."""
    return cast(IO[bytes], gzip.open(path, "rb")) if path.suffix == ".gz" else path.open("rb")


@contextmanager
def _gzip_errors(path: Path) -> Iterator[None]:
    """Names the file when it is not gzip after all or ends early: gzip says neither which
    file, nor (EOFError, which the CLI shows as "Aborted.") what went wrong."""
    try:
        yield
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{path}: truncated or not gzip ({error})") from error


def decoded_lines(
    path: Path, errors: ParseErrors, encoding: str = "utf-8", skip_header: bool = False
) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-empty line; undecodable lines are counted and skipped.
    UTF-8 is read as `utf-8-sig`, so that a byte order mark does not spoil the first line."""
    codec = "utf-8-sig" if encoding == "utf-8" else encoding
    with _gzip_errors(path), open_text(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if skip_header and number == 1:
                continue
            try:
                line = raw.decode(codec).rstrip("\r\n")
            except UnicodeDecodeError:
                errors.add(f"not valid {encoding}", f"{path.name}:{number}")
                continue
            if line.strip():
                yield number, line


def split_lines(
    path: Path,
    separator: str,
    fields: int,
    errors: ParseErrors,
    encoding: str = "utf-8",
    skip_header: bool = False,
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each line with exactly `fields` fields (at least, when the last
    field may contain the separator: pass a negative count)."""
    exact = fields > 0
    wanted = abs(fields)
    for number, line in decoded_lines(path, errors, encoding, skip_header):
        parts = line.split(separator) if exact else line.split(separator, wanted - 1)
        if len(parts) != wanted:
            errors.add(f"expected {wanted} fields", f"{path.name}:{number}")
            continue
        yield number, parts


def parse_number(text: str) -> float | None:
    """A float, or None where the text is not a number (empty stays missing: NaN)."""
    text = text.strip()
    if not text:
        return float("nan")
    try:
        return float(text)
    except ValueError:
        return None


def csv_rows(path: Path, fields: int, errors: ParseErrors) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each row of a quoted CSV file with a header line. One reader
    reads the whole file, so a quoted field may hold newlines; a row is numbered by the line
    it starts on. Rows with bytes that are not UTF-8 are counted and skipped."""
    for number, row in _csv_records(path):
        if number == 1:
            continue
        if any(_UNDECODABLE in value for value in row):
            errors.add("not valid utf-8", f"{path.name}:{number}")
        elif row and any(value.strip() for value in row):
            if len(row) != fields:
                errors.add(f"expected {fields} fields", f"{path.name}:{number}")
                continue
            yield number, row


def csv_header(path: Path) -> list[str]:
    """The column names on the first line of a CSV file."""
    return next((row for _, row in _csv_records(path)), [])


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    with (
        _gzip_errors(path),
        open_text(path) as raw,
        io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as handle,
    ):
        reader = csv.reader(handle)
        start = 1
        for row in reader:
            yield start, row
            start = reader.line_num + 1
