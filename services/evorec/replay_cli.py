"""`evorec replay`: stream a prepared dataset's events into InterestService (see
evorec.learning.replay); and the first-run replay of the embedded default in `evorec up`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from evorec.cli_options import ConfigOption
from evorec.platform.config import Settings, load_settings

if TYPE_CHECKING:
    from evorec.learning.replay import ReplayResult

console = Console()


def run_replay(
    settings: Settings,
    dataset: Path,
    split: Literal["all", "train"],
    speed: float | None,
    restart: bool,
) -> None:
    """Replays `dataset` into the configured InterestService with a progress bar."""
    import grpc

    from evorec.data.artifacts import DatasetLayout
    from evorec.learning.replay import Checkpoint, replay, replay_events
    from evorec.platform.clients import interest_client

    events = replay_events(DatasetLayout(dataset), split)
    checkpoint = Checkpoint(settings.data_dir / "replay", events.key)
    if restart:
        checkpoint.path.unlink(missing_ok=True)

    async def stream(update: Callable[[int, int], None]) -> ReplayResult:
        async with interest_client(settings) as interest:
            return await replay(interest.stub, events, checkpoint, speed, update)

    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console,
    ) as bar:  # fmt: skip
        task = bar.add_task(f"replaying {dataset.name}", total=len(events))
        try:
            result = asyncio.run(
                stream(lambda sent, total: bar.update(task, completed=sent, total=total))
            )
        except grpc.RpcError as error:
            raise RuntimeError(
                f"InterestService: {error.code().name}: {error.details()}; run the same command "
                "again to resume"
            ) from error
    console.print(
        f"{result.sent:,} of {len(events):,} events sent: {result.accepted:,} stored, "
        f"{result.duplicates:,} already there, {result.rejected:,} rejected"
    )


def replay(
    dataset: Annotated[Path, typer.Argument(help="A prepared dataset.")],
    speed: Annotated[
        float,
        typer.Option(help="N times real time (by the events' times); 0: as fast as possible."),
    ] = 0.0,
    split: Annotated[
        str, typer.Option(help="all, or train (leave-one-out training events only).")
    ] = "all",
    restart: Annotated[
        bool, typer.Option(help="Start from the first event, not where the last run stopped.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Stream a prepared dataset's events into InterestService (StreamEvents) in time order;
    resumable, and idempotent (event ids)."""
    if split not in ("all", "train"):
        raise ValueError(f"--split must be all or train, not {split!r}")
    if speed < 0:
        raise ValueError("--speed must be 0 (as fast as possible) or positive")
    run_replay(load_settings(config), dataset, split, speed or None, restart)  # type: ignore[arg-type]


def replay_default_once(settings: Settings) -> None:
    """`evorec up` on the embedded default: the default dataset's training events are
    replayed into the interest service once (a finished replay's checkpoint says so; an
    interrupted one goes on at the next start), so a user's first `evorec recommend`
    answers from history. A failed replay is reported and leaves the services running."""
    from evorec.data.artifacts import DatasetLayout
    from evorec.learning.replay import Checkpoint, replay_events

    if settings.dataset is not None:
        return
    events = replay_events(DatasetLayout(settings.dataset_path), "train")
    if Checkpoint(settings.data_dir / "replay", events.key).read() >= len(events):
        return
    try:
        run_replay(settings, settings.dataset_path, "train", None, restart=False)
    except RuntimeError as error:  # the services run on; the next `evorec up` goes on with it
        console.print(f"[yellow]replaying the default dataset stopped: {error}[/yellow]")
