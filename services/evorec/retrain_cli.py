"""`evorec retrain` (retrain from the live services, gate, publish; see evorec.learning.retrain)
and `evorec promote` (move the stable label to the canary's version)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from evorec.cli_options import ConfigOption, config_options
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.platform.config import Settings, load_settings
from evorec.platform.stop_signals import raise_on_stop_signals

if TYPE_CHECKING:
    from evorec.learning.retrain import RetrainRequest as Request

console = Console()


@config_options(omit=("members",))  # single encoders only: see evorec.encoder.ensemble
def retrain(
    from_scratch: Annotated[
        bool, typer.Option(help="Start from random weights, not from the serving version.")
    ] = False,
    model: Annotated[
        str, typer.Option(help="From scratch: transformer, gru or lstm (-text for text).")
    ] = "transformer-text",
    label: Annotated[
        str | None, typer.Option(help="Point this version label (canary) at a published one.")
    ] = None,
    model_config: Annotated[
        Path,
        typer.Option(
            help="TF Serving's model config (versions, labels), with TF Serving or --label."
        ),
    ] = Path("serving/models.config"),
    every: Annotated[
        str | None,
        typer.Option(
            help="Retrain on this period (30m, 6h, 1d) until stopped; a run that "
            "fails is reported and the next one comes."
        ),
    ] = None,
    config: ConfigOption = None,
    *,
    encoder: EncoderConfig,
    training: TrainingConfig,
) -> None:
    """Build a dataset from the live services, train a candidate (warm-started from the
    serving version), and publish it as the next version only if it is not worse than the
    serving one on each user's newest event by more than retrain.ndcg_margin."""
    from evorec.learning.retrain import RetrainRequest
    from evorec.learning.schedule import every as repeat
    from evorec.learning.schedule import parse_duration

    settings = load_settings(config)
    request = RetrainRequest(
        encoder=encoder.named(model),
        training=training,
        from_scratch=from_scratch,
        label=label,
        # TF Serving's config is written when TF Serving serves, or a label is asked for.
        model_config=(
            model_config if label is not None or settings.serving.backend == "tf_serving" else None
        ),
    )
    if every is None:
        _retrain_once(settings, request)
        return
    period = parse_duration(every)

    def turn() -> None:
        try:
            _retrain_once(settings, request)
        except RuntimeError as error:  # RetrainFailed, lock.Busy: the next turn may do better
            console.print(f"[red]{error}[/red]")

    console.print(f"retraining every {every}; Ctrl-C stops")
    raise_on_stop_signals()
    try:
        repeat(period, turn)
    except KeyboardInterrupt:
        console.print("stopped")


def _retrain_once(settings: Settings, request: Request) -> None:
    from evorec.learning.retrain import RetrainFailed
    from evorec.learning.retrain import retrain as run

    with console.status("retraining") as status:
        try:
            report = run(settings, request, status.update)
        except RetrainFailed as error:
            raise RuntimeError(f"{error} (report: {error.report['report_path']})") from error
    candidate, serving = report["candidate"], report["serving"]
    if candidate:
        console.print(
            f"candidate version {report['candidate_version']} ({report['mode']}): NDCG@10 "
            f"{candidate['ndcg@10']:.4f} on {report['evaluation']['users']} users' newest event"
            + (
                f", serving version {report['serving_version']}: {serving['ndcg@10']:.4f}"
                if serving
                else ""
            )
        )
    verb = "published" if report["decision"] == "published" else "kept aside"
    console.print(f"{verb}: {report['reason']} -> {report['candidate_path']}")
    console.print(f"report: {report['report_path']}")
    if "label_error" in report:
        version = report["candidate_version"]
        raise RuntimeError(f"version {version} is published, but {report['label_error']}")
    if "config_error" in report:
        raise RuntimeError(
            f"version {report['candidate_version']} is published, but TF Serving's model config"
            f" {request.model_config} was not updated ({report['config_error']}): TF Serving"
            " does not load it until the config lists it"
        )


def promote(
    source: Annotated[str, typer.Option("--from", help="The label whose version moves up.")] = (
        "canary"
    ),
    target: Annotated[str, typer.Option("--to", help="The label that moves.")] = "stable",
    model_config: Annotated[
        Path, typer.Option(help="TF Serving's model config file holding the labels.")
    ] = Path("serving/models.config"),
    config: ConfigOption = None,
) -> None:
    """Point the stable label at the canary's version, once that version loads and answers."""
    from evorec.learning.promote import promote as run

    settings = load_settings(config)
    moved = run(model_config, settings.serving.model_dir(settings.data_dir), source, target)
    console.print(f"{model_config}: label {target} {moved.previous} -> {moved.version}")
