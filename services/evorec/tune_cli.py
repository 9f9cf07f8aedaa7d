"""`evorec tune`: search an encoder's settings on a dataset's validation data with Optuna and
save the best as a named preset that `evorec train` and `evorec evaluate` read (`--preset`)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from evorec.cli_options import ConfigOption, DatasetArgument, config_options
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.platform.config import load_settings

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

    from evorec.data.artifacts import DatasetLayout
    from evorec.tuning import Budget

console = Console()


@config_options(omit=("members",))  # single encoders only: see evorec.encoder.ensemble
def tune(
    dataset: DatasetArgument = None,
    model: Annotated[str, typer.Option(help="transformer, gru or lstm.")] = "transformer",
    text: Annotated[bool, typer.Option(help="Add the projected text vector to each item.")] = True,
    trials: Annotated[int | None, typer.Option(help="Run at most this many more trials.")] = None,
    minutes: Annotated[
        float | None,
        typer.Option(help="Start no trial after this many minutes (the running one finishes)."),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option(
            help="Study name in <dataset>/tuning/studies.db (default: the model name); "
            "an existing one resumes."
        ),
    ] = None,
    preset: Annotated[
        str, typer.Option(help="Write the best settings as this preset of the dataset.")
    ] = "tuned",
    search: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated settings to search (default: all of evorec.tuning.SPACE)."
        ),
    ] = None,
    report_only: Annotated[
        bool,
        typer.Option(
            help="Run no trial: write the table, plots and preset of the study as it stands "
            "(e.g. after an interrupted run)."
        ),
    ] = False,
    config: ConfigOption = None,
    *,
    encoder: EncoderConfig,
    training: TrainingConfig,
) -> None:
    """Search the encoder's settings on validation data (Optuna, pruning hopeless trials);
    the options give the first trial and the fixed settings (--epochs, --patience: per trial).
    Writes the study's table and plots to <dataset>/tuning/<study>/ and the best settings to
    <dataset>/presets/<preset>.json."""
    from evorec.data.artifacts import DatasetLayout
    from evorec.encoder.presets import PresetError, preset_path

    budget = None if report_only else _budget(trials, minutes)
    root = dataset or load_settings(config).dataset_path
    if not (root / "manifest.json").is_file():
        raise typer.BadParameter(
            f"{root} is not a prepared dataset (no manifest.json): run `evorec data prepare`",
            param_hint="DATASET",
        )
    try:
        preset_path(root, preset)  # a bad preset name fails now, not after the study
    except PresetError as error:
        raise typer.BadParameter(str(error), param_hint="--preset") from error
    run_tuning(
        DatasetLayout(root), encoder.named(f"{model}-text" if text else model), training,
        budget, study, preset, search.split(",") if search else None,
    )  # fmt: skip


def _budget(trials: int | None, minutes: float | None) -> Budget:
    from evorec.tuning import Budget, TuningError

    try:
        return Budget(trials, minutes)
    except TuningError as error:
        raise typer.BadParameter(str(error), param_hint="--trials/--minutes") from error


def run_tuning(
    layout: DatasetLayout,
    encoder: EncoderConfig,
    training: TrainingConfig,
    budget: Budget | None,
    study_name: str | None,
    preset: str,
    search: list[str] | None = None,
) -> Path:
    """Runs the study within `budget` (None: no trial), prints and writes its table and
    plots, writes the best settings as `preset`; returns the preset's path."""
    from evorec.encoder.presets import write_preset
    from evorec.tuning import (
        ENCODER_FIELDS,
        TUNING_DIR,
        TuningError,
        best_settings,
        markdown,
        open_study,
        plot_parameters,
        plot_study,
        searched,
        starting_point,
        study_exists,
        trials_table,
    )

    try:
        space = searched(encoder, search)
        start = starting_point(encoder, training, space)
    except TuningError as error:
        raise typer.BadParameter(str(error)) from error
    name = study_name or encoder.name
    fixed = {
        "model": encoder.name,
        **{k: v for k, v in encoder.as_dict().items() if k not in space},
        **{k: v for k, v in training.as_dict().items() if k not in space},
    }
    if budget is None and not study_exists(layout.root, name):
        raise typer.BadParameter(f"no study {name!r} to report on yet", param_hint="--study")
    try:
        study, new = open_study(layout.root, name, fixed, training.seed)
    except TuningError as error:
        raise typer.BadParameter(str(error), param_hint="--study") from error
    if new:
        study.enqueue_trial(start)
    if budget is not None:
        _optimize(study, layout, encoder, training, space, budget)
    frame = trials_table(study)
    out = layout.root / TUNING_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "trials.md").write_text(markdown(frame))
    frame.to_csv(out / "trials.csv", index=False)
    plot_study(study, out / "study.png")
    plot_parameters(study, out / "parameters.png")
    table = Table(*map(str, frame.columns), title=f"study {name} on {layout.root.name}")
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    console.print(markdown(frame), highlight=False)
    best = best_settings(study)
    params = best["params"]
    path = write_preset(
        layout.root,
        preset,
        {k: v for k, v in params.items() if k in ENCODER_FIELDS},
        {k: v for k, v in params.items() if k not in ENCODER_FIELDS},
        best["source"],
    )
    console.print(
        f"best: trial {best['source']['trial']}, valid NDCG@10 "
        f"{best['source']['valid'].get('ndcg@10', float('nan')):.4f}, {params}"
    )
    console.print(f"table and plots in {out}; preset written to {path}")
    return path


def _optimize(
    study: optuna.Study,
    layout: DatasetLayout,
    encoder: EncoderConfig,
    training: TrainingConfig,
    space: dict[str, BaseDistribution],
    budget: Budget,
) -> None:
    """Runs trials of `study` until `budget` is spent, printing each one as it ends."""
    from evorec.data.sequences import LeaveOneOut
    from evorec.tuning import objective, validation_only

    data = validation_only(LeaveOneOut.load(layout))
    console.print(
        f"study {study.study_name!r} on {layout.root.name}: {len(study.trials)} trial(s) so far, "
        f"budget {budget.trials or 'unlimited'} trial(s), {budget.minutes or 'unlimited'} min"
    )

    def finished(_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        value = (
            trial.value
            if trial.value is not None
            else max(trial.intermediate_values.values(), default=float("nan"))
        )
        console.print(
            f"  trial #{trial.number} {trial.user_attrs.get('stopped', trial.state.name.lower())} "
            f"after {trial.user_attrs.get('epochs')} epochs, {trial.user_attrs.get('seconds')} s: "
            f"valid NDCG@10 {value:.4f} {trial.params}",
            highlight=False,
        )

    deadline = time.monotonic() + budget.minutes * 60 if budget.minutes is not None else math.inf
    study.optimize(
        objective(layout, data, encoder, training, space, deadline),
        n_trials=budget.trials,
        timeout=budget.minutes * 60 if budget.minutes is not None else None,
        callbacks=[finished],
    )
