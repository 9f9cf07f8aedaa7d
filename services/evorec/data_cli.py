"""`evorec data ...`: download public datasets, simulate one, prepare any of them, or take a
snapshot of the running services' events and catalog."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from evorec.cli_options import ConfigOption
from evorec.platform.config import load_settings

app = typer.Typer(help="Download, simulate and prepare interaction data.", no_args_is_help=True)
console = Console()


@app.command()
def download(
    name: Annotated[str, typer.Argument(help="Dataset name; `evorec data download --list`.")] = "",
    dest: Annotated[Path | None, typer.Option(help="Folder (default: <data_dir>/raw).")] = None,
    url: Annotated[str | None, typer.Option(help="Fetch from this URL instead (a mirror).")] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected SHA-256 with --url.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the known datasets.")] = False,
    config: ConfigOption = None,
) -> None:
    """Download a public dataset, resumably, and verify its SHA-256."""
    from evorec.data.download import SOURCES
    from evorec.data.download import download as fetch
    from evorec.data.schema import DataError

    if list_ or not name:
        table = Table("name", "size", "description")
        for source in SOURCES.values():
            table.add_row(source.name, f"{(source.size or 0) / 1e6:.1f} MB", source.description)
        console.print(table)
        return
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(SOURCES)}")
    source = SOURCES[name]
    if url is not None:
        source = replace(source, url=url, sha256=sha256 or source.sha256)
    folder = dest or load_settings(config).data_dir / "raw"
    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), console=console,
    ) as bar:  # fmt: skip
        task = bar.add_task(source.filename, total=source.size)
        path = fetch(
            source, folder, lambda done, total: bar.update(task, completed=done, total=total)
        )
    console.print(f"{name}: {path}")


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write events.csv, items.csv, truth/.")],
    users: int = 200,
    items: int = 400,
    topics: int = 8,
    events_per_user: int = 50,
    seed: int = 0,
) -> None:
    """Simulate users whose interests drift; writes the data and the ground truth."""
    from evorec.data.synth import SimulatorConfig, simulate

    config = SimulatorConfig(
        users=users, items=items, topics=topics, events_per_user=events_per_user, seed=seed
    )
    with console.status("simulating"):
        dataset = simulate(config)
        dataset.write(out, config)
    console.print(f"{len(dataset.events):,} events, {users:,} users, {items:,} items -> {out}")


@app.command()
def prepare(
    path: Annotated[Path, typer.Argument(help="A dataset folder or file (see the README).")],
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: <data_dir>/datasets/<name>).")
    ] = None,
    source_format: Annotated[
        str, typer.Option("--format", help="auto, movielens, amazon or generic.")
    ] = "auto",
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="FIELD=COLUMN for generic files, e.g. user=uid."),
    ] = None,
    items: Annotated[
        Path | None, typer.Option(help="Item file (generic) or Amazon meta file.")
    ] = None,
    rating_threshold: Annotated[
        float | None, typer.Option(help="Keep events with value >= this.")
    ] = None,
    min_user_events: Annotated[int, typer.Option(help="k-core: events per user.")] = 1,
    min_item_events: Annotated[int, typer.Option(help="k-core: events per item.")] = 1,
    max_bad_row_share: Annotated[
        float, typer.Option(help="Fail when more rows than this share do not parse.")
    ] = 0.05,
    topics: Annotated[
        int | None, typer.Option(help="Cluster into this many topics (ignores categories).")
    ] = None,
    vector_size: Annotated[int, typer.Option(help="Word2Vec dimension.")] = 64,
    pretrained: Annotated[
        Path | None, typer.Option(help="Pretrained word vectors instead of Word2Vec.")
    ] = None,
    pretrained_format: Annotated[
        str, typer.Option(help="word2vec, word2vec-binary or glove.")
    ] = "word2vec",
    stem: Annotated[bool, typer.Option(help="Stem English words.")] = False,
    text_encoder: Annotated[
        str,
        typer.Option(
            help="Item text vectors: word2vec (SIF mean of word vectors) or minilm (pretrained "
            "all-MiniLM-L6-v2, English only; `evorec models fetch minilm` first)."
        ),
    ] = "word2vec",
    seed: int = 0,
    config: ConfigOption = None,
) -> None:
    """Clean a dataset, split it, learn item text vectors and topics; print the report."""
    from evorec.data.cleaning import CleaningOptions
    from evorec.data.readers import ColumnMapping, read_dataset
    from evorec.embedding.word_vectors import Word2VecOptions
    from evorec.preparation import TEXT_ENCODERS, PrepareOptions
    from evorec.preparation import prepare as run
    from evorec.preprocess.text import TextOptions

    if text_encoder not in TEXT_ENCODERS:
        raise ValueError(f"--text-encoder must be one of {', '.join(TEXT_ENCODERS)}")
    settings = load_settings(config)

    options = PrepareOptions(
        cleaning=CleaningOptions(
            rating_threshold=rating_threshold,
            min_user_events=min_user_events,
            min_item_events=min_item_events,
            max_bad_row_share=max_bad_row_share,
        ),
        text=TextOptions(stem=stem),
        word2vec=Word2VecOptions(vector_size=vector_size, seed=seed),
        pretrained=pretrained,
        pretrained_format=pretrained_format,  # type: ignore[arg-type]
        topics=topics,
        seed=seed,
        text_encoder=text_encoder,
        minilm_dir=settings.text_models_path / "minilm" if text_encoder == "minilm" else None,
    )
    with console.status("reading") as status:
        raw = read_dataset(
            path,
            source_format,  # type: ignore[arg-type]
            ColumnMapping.parse(mapping or []) if mapping else None,
            items,
        )
        target = out or settings.data_dir / "datasets" / raw.name
        manifest = run(raw, target, options, progress=status.update)
    report = json.loads((target / "report.json").read_text())
    console.print(report_table(report))
    console.print(f"prepared in {manifest['seconds']} s -> {target}")


@app.command()
def snapshot(
    out: Annotated[
        Path | None,
        typer.Argument(help="Output folder (default: <data_dir>/datasets/live-<watermark>)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds the export may take.")] = 600.0,
    config: ConfigOption = None,
) -> None:
    """Prepare a dataset from the running services: every event (InterestService.ExportEvents)
    and item (EmbeddingService.ListItems), in the serving dataset's text space."""
    import asyncio

    from evorec.data.artifacts import DatasetLayout
    from evorec.learning.live_dataset import (
        live_dataset_path,
        options_following,
        take_snapshot,
        write_dataset,
    )
    from evorec.learning.lock import exclusive, learning_lock

    settings = load_settings(config)
    # Under the retrain's lock: a retrain removes the live datasets it does not use.
    with exclusive(learning_lock(settings.data_dir)), console.status("exporting") as status:
        taken = asyncio.run(take_snapshot(settings, timeout))
        target = out or live_dataset_path(settings.data_dir / "datasets", taken.watermark)
        options = options_following(DatasetLayout(settings.dataset_path), settings.text_models_path)
        manifest = write_dataset(taken, target, options, progress=status.update)
    console.print(report_table(json.loads((target / "report.json").read_text())))
    console.print(
        f"{manifest['counts']['events']:,} events, {manifest['counts']['items']:,} items up to"
        f" watermark {taken.watermark} -> {target}"
    )


def report_table(report: dict[str, object]) -> Table:
    """The data-quality report as a table for the terminal."""
    table = Table("", "count", title=f"data quality: {report['dataset']}")
    table.add_row("rows in", f"{report['rows_in']:,}")
    not_parsed = report["rows_not_parsed"]
    assert isinstance(not_parsed, dict)
    table.add_row("rows not parsed", f"{not_parsed['total']:,}")
    dropped = report["dropped"]
    assert isinstance(dropped, dict)
    for reason, count in dropped.items():
        table.add_row(f"dropped: {reason.replace('_', ' ')}", f"{count:,}")
    for key in ("events_out", "users", "items", "catalog_items_without_events", "density"):
        value = report[key]
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    lengths = report["sequence_length"]
    assert isinstance(lengths, dict)
    table.add_row("events per user", ", ".join(f"{k} {v}" for k, v in lengths.items()))
    return table
