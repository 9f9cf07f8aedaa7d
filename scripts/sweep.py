"""How cost grows with the work: runs the benchmark scripts along one axis at a time and
writes a markdown table and log-log plots.

    .venv/bin/python scripts/sweep.py [--axes store,history,callers,catalog]
        [--store-events 1000000,10000000,50000000] [--histories 50,200,1000]
        [--callers 1,4,16,64] [--catalog-items 10000,100000,1000000]
        [--out docs/benchmarks]

Axes (each point is one run of a script, in its own processes, on a fresh store):
- store: events already in the interest store (bulk-loaded by bench_interest.py
  --start-events), then 200,000 events ingested through the RPCs: ingest rate,
  GetInterestProfile and GetRecentItems p99, database size.
- history: events of the user whose profile and recent items are read (bench_interest.py
  --history), on a store of 1 million events.
- callers: IngestEvents calls and read calls in flight at once (--in-flight, --readers).
- catalog: items of the catalog, by scripts/bench_catalog.py --items N --json OUT (the
  approximate-index work); skipped, saying so, where that script is not in the checkout.

Writes OUT/sweep.md (the tables), OUT/sweep.json (every figure) and OUT/sweep-AXIS.png
(log-log plots); axes already in OUT/sweep.json and not measured in this run are kept. The
points of the store axis take long (50 million events: about 5 GiB of disk, deleted after
the point); each run's store lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from evorec.plotting import pyplot

ROOT = Path(__file__).resolve().parent.parent
SWEEP_INGEST_EVENTS = 200_000  # events ingested through the RPCs at each point
STORE_BASE = 1_000_000  # events in the store for the history and callers axes
# The sizes in use: these defaults, or main's --base and --ingest.
SIZES = {"base": STORE_BASE, "ingest": SWEEP_INGEST_EVENTS}
# Arguments every bench_interest.py run gets (--items and --users of main, for small runs).
BENCH_ARGS: list[str] = []


def run_bench_interest(*args: str) -> dict[str, Any]:
    """One run of bench_interest.py; its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "bench_interest.py"),
                *BENCH_ARGS,
                *args,
                "--json",
                str(out),
            ],
            check=True,
            stdout=sys.stderr,
        )
        figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def store_axis(points: list[int]) -> list[dict[str, Any]]:
    rows = []
    for events in points:
        figures = run_bench_interest(
            "--start-events", str(events), "--events", str(SIZES["ingest"])
        )
        rows.append({"events in store": events, **figures})
    return rows


def history_axis(points: list[int]) -> list[dict[str, Any]]:
    rows = []
    for history in points:
        figures = run_bench_interest(
            "--start-events", str(SIZES["base"]), "--events", str(SIZES["ingest"]),
            "--history", str(history),
        )  # fmt: skip
        rows.append({"history length": history, **figures})
    return rows


def callers_axis(points: list[int]) -> list[dict[str, Any]]:
    rows = []
    for callers in points:
        figures = run_bench_interest(
            "--start-events", str(SIZES["base"]), "--events", str(SIZES["ingest"]),
            "--in-flight", str(callers), "--readers", str(callers),
        )  # fmt: skip
        rows.append({"callers": callers, **figures})
    return rows


def catalog_axis(points: list[int]) -> list[dict[str, Any]]:
    script = ROOT / "scripts" / "bench_catalog.py"
    if not script.exists():
        print(
            f"catalog axis skipped: {script.relative_to(ROOT)} is not in this checkout"
            " (it comes with the approximate-index work)",
            file=sys.stderr,
        )
        return []
    rows = []
    for items in points:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "catalog.json"
            subprocess.run(
                [sys.executable, str(script), "--items", str(items), "--json", str(out)],
                check=True,
                stdout=sys.stderr,
            )
            figures = json.loads(out.read_text())
        numbers = {k: v for k, v in figures.items() if isinstance(v, int | float)}
        rows.append({"catalog items": items, **numbers})
    return rows


AXES = {
    "store": (store_axis, "events in store"),
    "history": (history_axis, "history length"),
    "callers": (callers_axis, "callers"),
    "catalog": (catalog_axis, "catalog items"),
}
# What the interest axes report, with their units.
INTEREST_COLUMNS = {
    "batch_events_per_s": "IngestEvents events/s",
    "stream_events_per_s": "StreamEvents events/s",
    "profile_p99_ms": "GetInterestProfile p99 ms",
    "recent_p99_ms": "GetRecentItems p99 ms",
    "database_mib": "database MiB",
}


def table(axis: str, rows: list[dict[str, Any]]) -> str:
    """A markdown table of one axis: its variable, then every figure measured."""
    key = AXES[axis][1]
    columns = [c for c in INTEREST_COLUMNS if c in rows[0]] or [c for c in rows[0] if c != key]
    names = [INTEREST_COLUMNS.get(c, c) for c in columns]
    lines = [f"| {key} | " + " | ".join(names) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in rows:
        cells = [f"{row[c]:,.2f}" if row[c] < 100 else f"{row[c]:,.0f}" for c in columns]
        lines.append(f"| {row[key]:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(axis: str, rows: list[dict[str, Any]], path: Path) -> None:
    """Log-log: each figure against the axis's variable, scaled to its first point, so that
    a slope of 1 is linear growth and 0 flat."""
    key = AXES[axis][1]
    columns = [c for c in INTEREST_COLUMNS if c in rows[0]] or [c for c in rows[0] if c != key]
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(6, 4))
    xs = [row[key] for row in rows]
    for column in columns:
        first = rows[0][column]
        if not first or any(row[column] <= 0 for row in rows):
            continue
        ax.plot(xs, [row[column] / first for row in rows], marker="o",
                label=INTEREST_COLUMNS.get(column, column))  # fmt: skip
    ax.plot(xs, [x / xs[0] for x in xs], color="grey", linestyle=":", label="linear")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(f"relative to {xs[0]:,}")
    ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--axes", default="store,history,callers,catalog")
    parser.add_argument("--store-events", type=numbers, default=[1_000_000, 10_000_000, 50_000_000])
    parser.add_argument("--histories", type=numbers, default=[50, 200, 1_000])
    parser.add_argument("--callers", type=numbers, default=[1, 4, 16, 64])
    parser.add_argument("--catalog-items", type=numbers, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--items", type=int, default=10_000, help="bench_interest's catalog")
    parser.add_argument("--users", type=int, default=2_000, help="bench_interest's users")
    parser.add_argument("--base", type=int, default=STORE_BASE, help="store for other axes")
    parser.add_argument("--ingest", type=int, default=SWEEP_INGEST_EVENTS, help="per point")
    args = parser.parse_args(argv)
    BENCH_ARGS[:] = ["--items", str(args.items), "--users", str(args.users)]
    SIZES.update(base=args.base, ingest=args.ingest)
    points = {
        "store": args.store_events,
        "history": args.histories,
        "callers": args.callers,
        "catalog": args.catalog_items,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    # The axes an earlier run measured into the same folder are kept, so that one axis can
    # be measured again (or for the first time) without running the others.
    kept = args.out / "sweep.json"
    results: dict[str, list[dict[str, Any]]] = json.loads(kept.read_text()) if kept.exists() else {}
    for axis in args.axes.split(","):
        run, _ = AXES[axis]
        rows = run(points[axis])
        if rows:
            results[axis] = rows
            plot(axis, rows, args.out / f"sweep-{axis}.png")
            print(f"### {axis}\n\n{table(axis, rows)}", flush=True)
        else:
            print(f"### {axis}\n\nskipped: nothing measured on this axis", flush=True)
        # Written after every axis, so that a long sweep stopped midway keeps what it did.
        sections = [
            f"### {name}\n\n{table(name, results[name])}" for name in AXES if name in results
        ]
        (args.out / "sweep.md").write_text("\n\n".join(sections) + "\n")
        kept.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
