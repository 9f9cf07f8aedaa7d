"""Proof: bad input, the fuzzing part. Coverage-guided fuzzing (atheris, libFuzzer) of the
dataset readers: whatever bytes a file holds, `read_dataset` either reads it or raises
DataError, the error the readers document; any other exception is a crash.

    nice -n 15 .venv/bin/python scripts/fuzz_readers.py [--seconds 300] [--runs 0]

Each input is one file (and, where a layout has one, its companion file): its first byte
picks the layout (generic CSV and JSON lines, Amazon reviews, ml-100k, ml-1m, ml-latest,
RecBole atomic), the rest is the file's bytes, then, after a 0x00 0xFF separator, the
companion's. The run starts from a small corpus of valid files of each layout, written
here, and stops after --seconds (or --runs executions, when given). It prints the executions
and the crashes: on a crash libFuzzer stops, writes the input as `crash-*` in --artifacts and
prints the traceback; the script then exits non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["evorec.data"]):
    from evorec.data.readers import read_dataset
    from evorec.data.schema import DataError

LAYOUTS = (
    ("events.csv", None),
    ("events.jsonl", None),
    ("reviews_Books.json", "meta_Books.json"),
    ("u.data", "u.item"),
    ("ratings.dat", "movies.dat"),
    ("ratings.csv", "movies.csv"),
    ("x.inter", "x.item"),
)
SEPARATOR = b"\x00\xff"
CORPUS = {
    0: (b"user_id,item_id,timestamp,event_type,value\nu1,i1,881250949,rating,4\n", b""),
    1: (b'{"user_id": "u1", "item_id": "i1", "timestamp": "2020-01-01T00:00:00"}\n', b""),
    2: (
        b'{"reviewerID": "u1", "asin": "i1", "overall": 5.0, "unixReviewTime": 1400000000, '
        b'"summary": "ok", "reviewText": "good"}\n'
        b"{'reviewerID': 'u2', 'asin': 'i1', 'overall': 4, 'reviewTime': '01 2, 2014'}\n",
        b'{"asin": "i1", "title": "T", "description": ["<b>d</b>"], "category": ["Books"]}\n'
        b"{'asin': 'i2', 'categories': [['Books', 'Fiction']]}\n",
    ),
    3: (
        b"196\t242\t3\t881250949\n",
        b"242|Kolya (1996)|24-Jan-1997||http://x|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
    ),
    4: (b"1::1193::5::978300760\n", b"1193::One Flew (1975)::Drama\n"),
    5: (
        b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n",
        b'movieId,title,genres\n1,"Toy Story (1995)",Adventure|Animation\n',
    ),
    6: (
        b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t881250949\n",
        b"item_id:token\tmovie_title:token_seq\tclass:token_seq\n2\tKolya\tComedy\n",
    ),
}


def read_one(data: bytes, folder: Path) -> None:
    """Reads the file (and companion) `data` describes; DataError is a valid answer."""
    if not data:
        return
    name, companion_name = LAYOUTS[data[0] % len(LAYOUTS)]
    content, _, companion = data[1:].partition(SEPARATOR)
    for old in folder.iterdir():
        old.unlink()
    (folder / name).write_bytes(content)
    if companion_name is not None:
        (folder / companion_name).write_bytes(companion)
    # A file is read as itself where it is one (generic, Amazon), else as its folder's layout.
    target = folder / name if name.startswith(("events", "reviews")) else folder
    with contextlib.suppress(DataError):
        read_dataset(target)


def fuzz(libfuzzer_args: list[str]) -> None:
    """Runs atheris in this process (the child the main process starts)."""
    memory = "/dev/shm" if Path("/dev/shm").is_dir() else None
    folder = Path(tempfile.mkdtemp(prefix="evorec-fuzz-", dir=memory))
    atheris.Setup([sys.argv[0], *libfuzzer_args], lambda data: read_one(data, folder))
    atheris.Fuzz()


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300, help="time budget")
    parser.add_argument("--runs", type=int, default=0, help="executions budget (0: none)")
    parser.add_argument("--artifacts", type=Path, default=Path("."), help="where crash inputs go")
    parser.add_argument("--max-len", type=int, default=4096, help="bytes per input at most")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_known_args(argv)[0]


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    with tempfile.TemporaryDirectory() as corpus_dir:
        corpus = Path(corpus_dir)
        for layout, (content, companion) in CORPUS.items():
            (corpus / f"seed-{layout}").write_bytes(
                bytes([layout]) + content + SEPARATOR + companion
            )
        libfuzzer = [
            f"-max_total_time={args.seconds}",
            f"-max_len={args.max_len}",
            f"-artifact_prefix={args.artifacts.resolve()}/",
            "-print_final_stats=1",
            str(corpus),
        ]
        if args.runs:
            libfuzzer.insert(0, f"-runs={args.runs}")
        if args.child:
            fuzz(libfuzzer)
            return 0
        process = subprocess.run(
            [sys.executable, __file__, "--child", *(argv or sys.argv[1:])],
            capture_output=True,
            text=True,
            check=False,
        )
    output = process.stdout + process.stderr
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", output)
    done = re.search(r"Done (\d+) runs in (\d+) second", output)
    executions = int(runs[-1]) if runs else int(done.group(1)) if done else 0
    crashed = process.returncode != 0
    if crashed:
        start = output.find("=== Uncaught Python exception")
        print(output[start:] if start >= 0 else output[-6000:])
    print(f"executions: {executions:,}; crashes: {int(crashed)}; exit status {process.returncode}")
    return 1 if crashed else 0


if __name__ == "__main__":
    raise SystemExit(main())
