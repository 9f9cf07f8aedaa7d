"""`evorec train` and `evorec evaluate`: fit the sequence encoders, compare them with the
baselines, export a model for TensorFlow Serving."""

from __future__ import annotations

import json
import resource
import statistics
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TimeElapsedColumn
from rich.table import Table

from evorec.cli_options import (
    ConfigOption,
    DatasetArgument,
    PresetOption,
    config_options,
    explicit_options,
)
from evorec.encoder.config import EncoderConfig, TrainingConfig
from evorec.platform.config import load_settings

if TYPE_CHECKING:
    from evorec.data.artifacts import DatasetLayout
    from evorec.data.sequences import LeaveOneOut
    from evorec.encoder.ensemble import EnsembleTrainer
    from evorec.encoder.training import EpochRecord, Trainer, TrainingResult

console = Console()


def fit_encoder(
    layout: DatasetLayout,
    data: LeaveOneOut,
    encoder: EncoderConfig,
    training: TrainingConfig,
    checkpoints: Path | None = None,
) -> tuple[Trainer | EnsembleTrainer, TrainingResult]:
    """Trains `encoder` (a seed ensemble when its `members` is above 1) with a progress bar."""
    import numpy as np

    from evorec.encoder.ensemble import EnsembleTrainer
    from evorec.encoder.model import SequenceEncoder
    from evorec.encoder.training import Trainer

    text = np.load(layout.item_vectors_of(data.text)) if encoder.use_text else None
    if text is not None and not text[1:].any():
        # Its text half would learn from zeros, and the ids it hides (id_dropout) would leave
        # those items with nothing: worse than the id-only model, so not trained silently.
        raise ValueError(
            f"{layout.root.name} has no item text vectors (its items have no text): "
            f"{encoder.name} needs them; train the id-only {encoder.kind} (--no-text) instead"
        )
    trainer: Trainer | EnsembleTrainer
    if encoder.members > 1:
        trainer = EnsembleTrainer(data, encoder, training, text, checkpoints)
    else:
        model = SequenceEncoder(data.n_items, encoder, text, seed=training.seed)
        trainer = Trainer(model, data, training, checkpoints)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        run = f"{encoder.name} seed {training.seed}"
        if encoder.members > 1:
            run += f", {encoder.members} members"
        task = bar.add_task(run, total=training.epochs * encoder.members)
        epochs = 0

        def show(record: EpochRecord) -> None:
            nonlocal epochs
            epochs += 1
            bar.update(
                task,
                completed=epochs,
                description=f"{run}: epoch {record.epoch}, loss {record.loss:.3f}, "
                f"valid NDCG@10 {record.valid_ndcg10:.4f}",
            )

        result = trainer.fit(show)
    for number, member in enumerate(result.members):
        console.print(
            f"member {number}: best epoch {member['best_epoch']}, "
            f"valid NDCG@10 {member['valid']['ndcg@10']:.4f}"
        )
    return trainer, result


@config_options()
def train(
    context: typer.Context,
    dataset: DatasetArgument = None,
    model: Annotated[str, typer.Option(help="transformer, gru or lstm.")] = "transformer",
    text: Annotated[bool, typer.Option(help="Add the projected text vector to each item.")] = True,
    name: Annotated[str, typer.Option(help="Model name under the export base path.")] = "encoder",
    out: Annotated[
        Path | None,
        typer.Option(help="Export base path (default: serving.base_path, else <data_dir>/models)."),
    ] = None,
    checkpoints: Annotated[Path | None, typer.Option(help="Resumable checkpoints here.")] = None,
    preset: PresetOption = None,
    config: ConfigOption = None,
    *,
    encoder: EncoderConfig,
    training: TrainingConfig,
) -> None:
    """Train a sequence encoder, report its test metrics, export it for TF Serving."""
    from evorec.data.artifacts import DatasetLayout

    settings = load_settings(config)
    root = dataset or settings.dataset_path
    encoder, training = with_preset(root, preset, encoder, training, context)
    train_and_export(
        DatasetLayout(root),
        encoder.named(f"{model}-text" if text else model),
        training,
        out or settings.serving.model_dir(settings.data_dir).parent,
        name,
        checkpoints,
    )


def cpu_seconds() -> float:
    """User and system CPU time of this process so far, all threads together."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def with_preset(
    dataset: Path,
    preset: str | None,
    encoder: EncoderConfig,
    training: TrainingConfig,
    context: typer.Context,
) -> tuple[EncoderConfig, TrainingConfig]:
    """The settings of `preset` (if any) of `dataset`, under the options that `context`'s
    command line gave explicitly."""
    if preset is None:
        return encoder, training
    from evorec.encoder.presets import apply_preset, read_preset

    encoder, training = apply_preset(
        read_preset(dataset, preset), encoder, training, explicit_options(context)
    )
    console.print(f"preset {preset}: {encoder.as_dict()} {training.as_dict()}", highlight=False)
    return encoder, training


def train_and_export(
    layout: DatasetLayout,
    encoder: EncoderConfig,
    training: TrainingConfig,
    base: Path,
    name: str,
    checkpoints: Path | None = None,
) -> Path:
    """Trains `encoder` on `layout`, prints its test metrics and exports it as the next
    version under `<base>/<name>/`; returns the version folder."""
    from evorec.data.sequences import LeaveOneOut
    from evorec.encoder.export import export_model
    from evorec.evaluation.protocol import test_metrics

    layout.read_manifest()  # a dataset of another format is refused before training
    data = LeaveOneOut.load(layout)
    trainer, result = fit_encoder(layout, data, encoder, training, checkpoints)
    metrics = test_metrics(trainer.scores, data, layout)
    details = {
        "training": training.as_dict(),
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 1),
        "seconds_per_epoch": round(result.seconds / max(1, len(result.history)), 2),
        "peak_memory_mib": round(result.peak_memory_mib),
        "members": result.members,
        "metrics": {"valid": result.valid, "test": metrics},
    }
    path = export_model(trainer.model, layout, base, name, details)
    table = Table(
        "metric", "test", title=f"{encoder.name} on {layout.root.name} (seen items excluded)"
    )
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    console.print(
        f"best epoch {result.best_epoch}, {details['seconds']} s, "
        f"{details['seconds_per_epoch']} s/epoch, "
        f"peak resident memory {details['peak_memory_mib']} MiB"
    )
    console.print(f"exported to {path}")
    return path


@config_options(omit=("seed",))
def evaluate(
    context: typer.Context,
    dataset: DatasetArgument = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated; see evorec.evaluation.protocol.")
    ] = "popular,item-cosine,markov,transformer-text",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds for the encoders.")] = "0",
    protocols: Annotated[
        str, typer.Option(help="Comma-separated: loo, cold-start, evolution.")
    ] = "loo",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results here.")] = None,
    plots: Annotated[Path | None, typer.Option(help="Write PNG plots into this folder.")] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            help="Evolution on simulated data: the folder `evorec data synth` wrote (events.csv, "
            "truth/); adds each method per kind of user against the ground truth."
        ),
    ] = None,
    preset: PresetOption = None,
    config: ConfigOption = None,
    *,
    encoder: EncoderConfig,
    training: TrainingConfig,
) -> None:
    """Compare models under leave-one-out (full ranking, seen items excluded), on the
    new-item split (text cold start) and on interest evolution; print tables."""
    from evorec.data.artifacts import DatasetLayout
    from evorec.evaluation import protocol
    from evorec.evaluation.results import as_table

    layout = DatasetLayout(dataset or load_settings(config).dataset_path)
    layout.read_manifest()  # a dataset of another format is refused before training
    encoder, training = with_preset(layout.root, preset, encoder, training, context)
    curves: dict[str, list[float]] = {}

    def train_encoder(name: str, seed: int, data: LeaveOneOut) -> tuple[Any, dict[str, Any]]:
        cpu_before = cpu_seconds()
        trainer, result = fit_encoder(
            layout, data, encoder.named(name), replace(training, seed=seed)
        )
        curves[f"{name} seed {seed}"] = [r.valid_ndcg10 for r in result.history]
        epochs = [r.seconds for r in result.history] or [0.0]
        return trainer.scores, {
            "best_epoch": result.best_epoch,
            "epochs": len(result.history),
            "seconds": result.seconds,
            "seconds_per_epoch": result.seconds / max(1, len(result.history)),
            # Robust to a few epochs stretched by a paused or crowded machine.
            "median_seconds_per_epoch": statistics.median(epochs),
            # CPU time (user + system, all threads) of the training: its cost in core-seconds,
            # which a pause of the process does not add to.
            "cpu_seconds": cpu_seconds() - cpu_before,
            "peak_memory_mib": result.peak_memory_mib,
            "valid": result.valid,
            "members": result.members,
        }

    names = models.split(",")
    seed_list = [int(s) for s in seeds.split(",")]
    report: dict[str, Any] = {}
    fused = [m for m in names if protocol.fusion_parts(m)[1]]
    if fused and protocols != "loo":
        raise ValueError(
            f"{', '.join(fused)}: a fused model is scored under leave-one-out only "
            "(--protocols loo; its fusion is chosen on that split's validation targets)"
        )
    for name in protocols.split(","):
        if name == "loo":
            results = protocol.evaluate(layout, names, seed_list, train_encoder, console.print)
            shown = ["model", "seeds", "ndcg@10", "hr@10", "mrr", "coverage"]
        elif name == "cold-start":
            results = protocol.evaluate_cold_start(
                layout, names, seed_list, train_encoder, console.print
            )
            shown = ["model", "seeds", "recall@10", "recall@20"]
        elif name == "evolution":
            encoders = [n for n in names if n not in protocol.BASELINES]
            if plots is not None:
                plots.mkdir(parents=True, exist_ok=True)
            results = protocol.evaluate_evolution(
                layout, encoders, seed_list, train_encoder, console.print,
                timelines=plots / "timelines.png" if plots is not None else None,
                truth=truth,
            )  # fmt: skip
            shown = ["model", "seeds", "js_divergence", "top_topic_accuracy", "empty"]
        else:
            raise ValueError(f"unknown protocol {name!r}: use loo, cold-start or evolution")
        frame = as_table(results)[shown]
        table = Table(*shown, title=f"{layout.root.name}, {name} (--json: everything)")
        for row in frame.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        console.print(table)
        report[name] = [asdict(r) for r in results]
        if plots is not None and name == "loo":
            from evorec.evaluation.plots import plot_metrics

            plots.mkdir(parents=True, exist_ok=True)
            plot_metrics(results, plots / "metrics.png")
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n")
    if plots is not None and curves:
        from evorec.evaluation.plots import plot_curves

        plots.mkdir(parents=True, exist_ok=True)
        plot_curves(curves, plots / "training.png")


def export(
    version_dir: Annotated[
        Path | None,
        typer.Argument(
            help="An exported version folder (default: the newest under <data_dir>/models)."
        ),
    ] = None,
    base: Annotated[Path, typer.Option(help="TF Serving's base path to publish into.")] = Path(
        "serving/models"
    ),
    label: Annotated[
        str | None, typer.Option(help="Point this version label (stable, canary) at it.")
    ] = None,
    model_config: Annotated[
        Path, typer.Option(help="TF Serving's model config file: its versions and labels.")
    ] = Path("serving/models.config"),
    config: ConfigOption = None,
) -> None:
    """Publish an exported model version into TF Serving's base path (and set a label); TF
    Serving's model config then loads the newest two versions and the labelled ones. With
    TF Serving as the backend, the label moves once TF Serving reports the version
    AVAILABLE. A version already in the base path is not copied again: run it on
    `<base>/<model>/<version>` to move a label there later."""
    from evorec.encoder.publish import LABEL_WAIT_S, apply_version_policy, move_label, publish
    from evorec.encoder.versions import model_versions

    settings = load_settings(config)
    if version_dir is None:
        model_dir = settings.serving.model_dir(settings.data_dir)
        versions = model_versions(model_dir)
        if not versions:
            raise RuntimeError(f"no exported version under {model_dir}: run `evorec train`")
        version_dir = model_dir / str(versions[-1])
    target = base / version_dir.parent.name / version_dir.name
    if target.exists() and target.resolve() == version_dir.resolve():
        console.print(f"{target} is in the base path already")
    else:
        target = publish(version_dir, base)
        console.print(f"published {version_dir} as {target}")
    # The versions first: TF Serving refuses a label on a version it has not loaded.
    served = apply_version_policy(model_config, target.parent.name, model_versions(target.parent))
    console.print(f"{model_config}: TF Serving loads versions {', '.join(map(str, served))}")
    if label is not None:
        if settings.serving.backend == "tf_serving":
            console.print(
                f"waiting (at most {LABEL_WAIT_S:g} s) for TF Serving at"
                f" {settings.serving.tf_serving_target} to report version {target.name}"
                f" AVAILABLE before label {label} moves"
            )
        served = move_label(model_config, target.parent, label, int(target.name), settings)
        console.print(f"{model_config}: label {label} -> version {target.name}")
        console.print(f"{model_config}: TF Serving loads versions {', '.join(map(str, served))}")
