"""Hyper-parameter search for a sequence encoder with Optuna, on validation data only.

Each trial trains an encoder on the training sequences with settings drawn from `SPACE` and is
scored by its best validation NDCG@10 (early stopping's figure); every epoch reports the best
validation NDCG@10 so far to the trial, and a median pruner stops a trial whose curve is below
the median of the earlier trials' at the same epoch. The first trial of a new study is the
starting point (the command's options), so the study's best is never worse on validation
than where it started. The test targets are withheld from the data the trials see, so no
setting is chosen on them. The study lives in an SQLite file (Optuna's RDB storage) in the
dataset's folder, so an interrupted or finished study can be resumed with more trials.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.plotting import pyplot

if TYPE_CHECKING:
    import pandas as pd

    from evorec.data.artifacts import DatasetLayout
    from evorec.data.sequences import LeaveOneOut

TUNING_DIR = "tuning"
STORAGE_FILE = "studies.db"
# The search space: the encoder's shape and regularisation, the optimiser, the loss. Ranges
# are those that make sense for catalogs of thousands to tens of thousands of items, not
# fitted to one dataset; every dimension here divides by every head count.
SPACE: dict[str, BaseDistribution] = {
    "dim": CategoricalDistribution([32, 64, 128]),
    "blocks": IntDistribution(1, 3),
    "heads": CategoricalDistribution([1, 2, 4]),
    "dropout": FloatDistribution(0.0, 0.5),
    "id_dropout": FloatDistribution(0.0, 0.5),
    "max_len": CategoricalDistribution([50, 100, 200]),
    "learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
    "weight_decay": FloatDistribution(1e-4, 0.3, log=True),
    "loss": CategoricalDistribution(["full", "sampled"]),
    "weight_average": CategoricalDistribution([0.0, 0.9, 0.99]),
}
ENCODER_FIELDS = {f.name for f in dataclasses.fields(EncoderConfig)}
# Optuna's median pruner: no trial is pruned before this many trials have finished, nor
# before this many epochs (the first epochs' figures say little about where a trial ends) ...
PRUNER_STARTUP_TRIALS = 2
PRUNER_WARMUP_EPOCHS = 5
# ... and a random start of TPE this long before it models the finished trials.
SAMPLER_STARTUP_TRIALS = 5
METRIC = "ndcg@10"
HEARTBEAT_SECONDS = 60


class TuningError(ValueError):
    """A study that cannot run as asked (no budget, a start outside the space, a study of
    that name run with other fixed settings)."""


@dataclass(frozen=True)
class Budget:
    """How long a run of `tune` goes on: at most `trials` more trials and, when `minutes` is
    given, no more than that many minutes: no trial starts after them, and the trial running
    when they end stops after its current epoch (recorded as pruned, `stopped: budget`)."""

    trials: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        if self.trials is None and self.minutes is None:
            raise TuningError("give a budget: --trials N and/or --minutes M")
        if self.trials is not None and self.trials < 1:
            raise TuningError(f"--trials {self.trials}: a study needs at least one trial")
        if self.minutes is not None and not self.minutes > 0:
            raise TuningError(f"--minutes {self.minutes}: give a positive number of minutes")


def searched(
    encoder: EncoderConfig, names: Collection[str] | None = None
) -> dict[str, BaseDistribution]:
    """The part of `SPACE` that matters to `encoder` (id dropout only with text, heads only
    in a Transformer), restricted to `names` when given (the others stay at the start)."""
    unknown = set(names or ()) - set(SPACE)
    if unknown:
        raise TuningError(
            f"--search: unknown settings {', '.join(sorted(unknown))} (use {', '.join(SPACE)})"
        )
    space = {k: v for k, v in SPACE.items() if names is None or k in names}
    if not encoder.use_text:
        space.pop("id_dropout", None)
    if encoder.kind != "transformer":
        space.pop("heads", None)
    if not space:
        raise TuningError(f"--search: nothing to search for {encoder.name}")
    return space


def starting_point(
    encoder: EncoderConfig, training: TrainingConfig, space: Mapping[str, BaseDistribution]
) -> dict[str, Any]:
    """The searched settings of the starting configuration; a categorical one must be among
    the space's choices (a number may lie outside its range: Optuna then just warns)."""
    values = {**training.as_dict(), **encoder.as_dict()}
    start = {name: values[name] for name in space}
    for name, distribution in space.items():
        if (
            isinstance(distribution, CategoricalDistribution)
            and start[name] not in distribution.choices
        ):
            choices = ", ".join(map(str, distribution.choices))
            raise TuningError(
                f"--{name.replace('_', '-')} {start[name]} is outside the search space ({choices})"
            )
    return start


def suggest(trial: optuna.Trial, space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """One value per searched setting for `trial`."""
    values: dict[str, Any] = {}
    for name, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            values[name] = trial.suggest_categorical(name, list(distribution.choices))
        elif isinstance(distribution, IntDistribution):
            values[name] = trial.suggest_int(name, distribution.low, distribution.high)
        elif isinstance(distribution, FloatDistribution):
            values[name] = trial.suggest_float(
                name, distribution.low, distribution.high, log=distribution.log
            )
        else:
            raise TypeError(f"no suggestion for {type(distribution).__name__}")
    return values


def configs(
    encoder: EncoderConfig, training: TrainingConfig, values: Mapping[str, Any]
) -> tuple[EncoderConfig, TrainingConfig]:
    """`encoder` and `training` with `values` (a trial's settings) in place."""
    return (
        dataclasses.replace(encoder, **{k: v for k, v in values.items() if k in ENCODER_FIELDS}),
        dataclasses.replace(
            training, **{k: v for k, v in values.items() if k not in ENCODER_FIELDS}
        ),
    )


def validation_only(data: LeaveOneOut) -> LeaveOneOut:
    """`data` without its test targets: what a trial may see."""
    return dataclasses.replace(data, test_target=np.zeros(0, dtype=np.int64))


def storage_url(dataset: Path) -> str:
    """Optuna's SQLite storage of `dataset`'s studies (the folder is made)."""
    folder = dataset / TUNING_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / STORAGE_FILE).resolve()}"


def study_exists(dataset: Path, name: str) -> bool:
    """Whether `dataset` holds a study `name` (looked up without making one)."""
    if not (dataset / TUNING_DIR / STORAGE_FILE).is_file():
        return False
    return name in optuna.get_all_study_names(storage_url(dataset))


def open_study(
    dataset: Path, name: str, fixed: dict[str, Any], seed: int
) -> tuple[optuna.Study, bool]:
    """Study `name` of `dataset`, made or resumed; True when it is new. A resumed study must
    have been run with the same fixed settings (model, epochs, patience, ...): trials trained
    otherwise would not compare."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats let a resumed study mark a trial whose process died as failed, not running.
    with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna 4
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            storage_url(dataset),
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=3 * HEARTBEAT_SECONDS,
        )
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=SAMPLER_STARTUP_TRIALS),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS
        ),
    )
    new = "fixed" not in study.user_attrs
    if new:
        study.set_user_attr("fixed", fixed)
        study.set_user_attr("seed", seed)
    elif study.user_attrs["fixed"] != fixed:
        changed = sorted(
            k for k in fixed.keys() | study.user_attrs["fixed"].keys()
            if fixed.get(k) != study.user_attrs["fixed"].get(k)
        )  # fmt: skip
        raise TuningError(
            f"study {name!r} was run with other fixed settings ({', '.join(changed)}); "
            "resume it with those or name a new one with --study"
        )
    return study, new


def objective(
    layout: DatasetLayout,
    data: LeaveOneOut,
    encoder: EncoderConfig,
    training: TrainingConfig,
    space: Mapping[str, BaseDistribution],
    deadline: float = math.inf,
) -> Callable[[optuna.Trial], float]:
    """Optuna's objective: train with the trial's settings, report each epoch's best
    validation NDCG@10 so far (the pruner's curve), return the best. A trial still training
    at `deadline` (`time.monotonic()`) stops there as pruned."""

    def run(trial: optuna.Trial) -> float:
        from evorec.encoder.model import SequenceEncoder
        from evorec.encoder.training import EpochRecord, Trainer

        trial_encoder, trial_training = configs(encoder, training, suggest(trial, space))
        trial.set_user_attr("seed", trial_training.seed)
        text = np.load(layout.item_vectors_of(data.text)) if trial_encoder.use_text else None
        model = SequenceEncoder(data.n_items, trial_encoder, text, seed=trial_training.seed)
        trainer = Trainer(model, data, trial_training)
        best = -math.inf
        started = time.perf_counter()

        def report(record: EpochRecord) -> None:
            nonlocal best
            best = max(best, record.valid_ndcg10)
            trial.report(best, record.epoch)
            trial.set_user_attr("epochs", record.epoch)
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            if time.monotonic() >= deadline:
                trial.set_user_attr("stopped", "budget")
                raise optuna.TrialPruned(f"budget spent at epoch {record.epoch}: {best:.4f}")
            if trial.should_prune():
                trial.set_user_attr("stopped", "pruned")
                raise optuna.TrialPruned(f"pruned at epoch {record.epoch}: {best:.4f}")

        result = trainer.fit(report)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("valid", result.valid)
        return float(result.valid[METRIC])

    return run


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: its number, state (complete, pruned, budget: stopped when the time
    was spent, running, fail), best validation NDCG@10 (so far, for a stopped one), epochs,
    best epoch, seconds, seed and settings."""
    import pandas as pd

    rows = []
    for trial in study.trials:
        rows.append(
            {
                "trial": trial.number,
                "state": trial.user_attrs.get("stopped", trial.state.name.lower()),
                "valid ndcg@10": trial.value
                if trial.value is not None
                else max(trial.intermediate_values.values(), default=math.nan),
                "epochs": trial.user_attrs.get("epochs", 0),
                "best epoch": trial.user_attrs.get("best_epoch"),
                "seconds": trial.user_attrs.get("seconds"),
                "seed": trial.user_attrs.get("seed"),
                **trial.params,
            }
        )
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    """`frame` as a Markdown table, floats to 4 significant figures."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines) + "\n"


def plot_study(study: optuna.Study, path: Path) -> None:
    """Left: each trial's validation curve (best NDCG@10 so far by epoch; pruned ones dashed).
    Right: each trial's figure by trial number, and the best so far."""
    plt = pyplot()
    figure, (curves, history) = plt.subplots(1, 2, figsize=(12, 4.5))
    best_so_far, best = [], -math.inf
    for trial in study.trials:
        steps = sorted(trial.intermediate_values)
        values = [trial.intermediate_values[s] for s in steps]
        pruned = trial.state == optuna.trial.TrialState.PRUNED
        curves.plot(steps, values, linestyle="--" if pruned else "-", alpha=0.8,
                    label=f"#{trial.number}" + (" (pruned)" if pruned else ""))  # fmt: skip
        value = trial.value if trial.value is not None else max(values, default=math.nan)
        history.scatter([trial.number], [value], color="grey" if pruned else "tab:blue")
        if trial.value is not None:
            best = max(best, trial.value)
        best_so_far.append(best if best > -math.inf else math.nan)
    history.step([t.number for t in study.trials], best_so_far, where="post", color="tab:red",
                 label="best so far")  # fmt: skip
    curves.set(xlabel="epoch", ylabel="valid NDCG@10 (best so far)", title="validation curves")
    history.set(xlabel="trial", ylabel="valid NDCG@10", title=f"study {study.study_name}")
    if len(study.trials) <= 20:
        curves.legend(fontsize="small", ncol=2)
    history.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_parameters(study: optuna.Study, path: Path) -> None:
    """One panel per searched setting: each finished or pruned trial's figure against it."""
    plt = pyplot()
    frame = trials_table(study)
    names = [n for n in SPACE if n in frame.columns]
    columns = 3
    rows = max(1, math.ceil(len(names) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        complete = frame["state"] == "complete"
        for chosen, color in ((complete, "tab:blue"), (~complete, "grey")):
            axis.scatter(frame.loc[chosen, name].astype(str)
                         if isinstance(SPACE[name], CategoricalDistribution)
                         else frame.loc[chosen, name],
                         frame.loc[chosen, "valid ndcg@10"], color=color, s=18)  # fmt: skip
        if isinstance(SPACE[name], FloatDistribution) and SPACE[name].log:  # type: ignore[attr-defined]
            axis.set_xscale("log")
        axis.set(xlabel=name, ylabel="valid NDCG@10")
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def best_settings(study: optuna.Study) -> dict[str, Any]:
    """The best finished trial's settings and where they came from."""
    complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    if not complete:
        raise TuningError(f"study {study.study_name!r} has no finished trial yet")
    trial = study.best_trial
    return {
        "params": dict(trial.params),
        "source": {
            "study": study.study_name,
            "trial": trial.number,
            "valid": trial.user_attrs.get("valid", {METRIC: trial.value}),
            "best_epoch": trial.user_attrs.get("best_epoch"),
            "seed": trial.user_attrs.get("seed"),
            "fixed": study.user_attrs.get("fixed"),
            "trials": len(study.trials),
            "complete": len(complete),
        },
    }
