"""`evorec train` and `evorec evaluate`: fit the sequence encoders, compare them with the
baselines, export a model for TensorFlow Serving."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TimeElapsedColumn
from rich.table import Table

from evorec.platform.config import load_settings

console = Console()
ConfigOption = Annotated[Path | None, typer.Option("--config", help="TOML settings file.")]
DatasetArgument = Annotated[
    Path | None, typer.Argument(help="A prepared dataset (default: the configured one).")
]


def _encoder(name: str, options: dict[str, Any]) -> tuple[Any, Any]:
    from evorec.encoder.model import EncoderConfig
    from evorec.encoder.training import TrainingConfig

    kind, _, text = name.partition("-")
    encoder = EncoderConfig(
        kind=kind,  # type: ignore[arg-type]
        use_text=text == "text",
        dim=options["dim"],
        max_len=options["max_len"],
        blocks=options["blocks"],
        heads=options["heads"],
        dropout=options["dropout"],
        id_dropout=options["id_dropout"],
    )
    training = TrainingConfig(
        epochs=options["epochs"],
        batch_size=options["batch_size"],
        learning_rate=options["learning_rate"],
        patience=options["patience"],
        loss=options["loss"],
        mask_seen=options["mask_seen"],
        seed=options["seed"],
    )
    return encoder, training


def fit_encoder(name: str, layout: Any, data: Any, options: dict[str, Any]) -> Any:
    """Trains the encoder `name` (`transformer-text`, `gru`, ...) with a progress bar."""
    import numpy as np

    from evorec.encoder.model import SequenceEncoder
    from evorec.encoder.training import Trainer

    encoder, training = _encoder(name, options)
    model = SequenceEncoder(
        data.n_items, encoder, np.load(layout.item_vectors) if encoder.use_text else None
    )
    trainer = Trainer(model, data, training, options.get("checkpoints"))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(f"{name} seed {training.seed}", total=training.epochs)

        def show(record: Any) -> None:
            bar.update(
                task,
                completed=record.epoch,
                description=f"{name} seed {training.seed}: loss {record.loss:.3f}, "
                f"valid NDCG@10 {record.valid_ndcg10:.4f}",
            )

        result = trainer.fit(show)
    return trainer, result


def train(
    dataset: DatasetArgument = None,
    model: Annotated[str, typer.Option(help="transformer, gru or lstm.")] = "transformer",
    text: Annotated[bool, typer.Option(help="Add the projected text vector to each item.")] = True,
    epochs: int = 200,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    patience: Annotated[int, typer.Option(help="Epochs without a better validation NDCG@10.")] = 20,
    dim: int = 64,
    max_len: int = 200,
    blocks: int = 2,
    heads: Annotated[int, typer.Option(help="Attention heads (dim must divide by it).")] = 1,
    dropout: float = 0.2,
    id_dropout: Annotated[
        float, typer.Option(help="Share of items whose id embedding a step hides.")
    ] = 0.1,
    loss: Annotated[str, typer.Option(help="full (softmax) or sampled.")] = "full",
    mask_seen: Annotated[
        bool, typer.Option(help="Leave each position's seen items out of the full softmax.")
    ] = True,
    seed: int = 0,
    name: Annotated[str, typer.Option(help="Model name under the export base path.")] = "encoder",
    out: Annotated[
        Path | None,
        typer.Option(help="Export base path (default: serving.base_path, else <data_dir>/models)."),
    ] = None,
    checkpoints: Annotated[Path | None, typer.Option(help="Resumable checkpoints here.")] = None,
    config: ConfigOption = None,
) -> None:
    """Train a sequence encoder, report its test metrics, export it for TF Serving."""
    from evorec.data.artifacts import DatasetLayout

    settings = load_settings(config)
    options = dict(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience,
        dim=dim, max_len=max_len, blocks=blocks, heads=heads, dropout=dropout,
        id_dropout=id_dropout, loss=loss, mask_seen=mask_seen, seed=seed,
        checkpoints=checkpoints,
    )  # fmt: skip
    train_and_export(
        DatasetLayout(dataset or settings.dataset_path),
        f"{model}-text" if text else model,
        options,
        out or settings.serving.model_dir(settings.data_dir).parent,
        name,
    )


DEFAULT_OPTIONS: dict[str, Any] = dict(
    epochs=200, batch_size=64, learning_rate=1e-3, patience=20, dim=64, max_len=200, blocks=2,
    heads=1, dropout=0.2, id_dropout=0.1, loss="full", mask_seen=True, seed=0,
)  # fmt: skip


def train_and_export(
    layout: Any, full_name: str, options: dict[str, Any], base: Path, name: str
) -> Path:
    """Trains `full_name` (`transformer-text`, ...) on `layout`, prints its test metrics and
    exports it as the next version under `<base>/<name>/`; returns the version folder."""
    from evorec.encoder.export import export_model
    from evorec.evaluation.protocol import test_metrics
    from evorec.evaluation.sequences import LeaveOneOut

    data = LeaveOneOut.load(layout)
    trainer, result = fit_encoder(full_name, layout, data, options)
    metrics = test_metrics(trainer.scores(data.test_input), data, layout)
    details = {
        "training": trainer.config.as_dict(),
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 1),
        "seconds_per_epoch": round(result.seconds / max(1, len(result.history)), 2),
        "peak_memory_mb": round(result.peak_memory_mb),
        "metrics": {"valid": result.valid, "test": metrics},
    }
    path = export_model(trainer.model, layout, base, name, details)
    table = Table(
        "metric", "test", title=f"{full_name} on {layout.root.name} (seen items excluded)"
    )
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    console.print(
        f"best epoch {result.best_epoch}, {details['seconds']} s, "
        f"{details['seconds_per_epoch']} s/epoch, peak memory {details['peak_memory_mb']} MB"
    )
    console.print(f"exported to {path}")
    return path


def evaluate(
    dataset: DatasetArgument = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated; see evorec.evaluation.protocol.")
    ] = "popular,item-cosine,markov,transformer-text",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds for the encoders.")] = "0",
    protocols: Annotated[
        str, typer.Option(help="Comma-separated: loo, cold-start, evolution.")
    ] = "loo",
    epochs: int = 200,
    patience: int = 20,
    heads: Annotated[int, typer.Option(help="Attention heads of the Transformers.")] = 1,
    dropout: float = 0.2,
    mask_seen: Annotated[
        bool, typer.Option(help="Leave each position's seen items out of the full softmax.")
    ] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results here.")] = None,
    plots: Annotated[Path | None, typer.Option(help="Write PNG plots into this folder.")] = None,
    config: ConfigOption = None,
) -> None:
    """Compare models under leave-one-out (full ranking, seen items excluded), on the
    new-item split (text cold start) and on interest evolution; print tables."""
    from evorec.data.artifacts import DatasetLayout
    from evorec.evaluation import protocol

    layout = DatasetLayout(dataset or load_settings(config).dataset_path)
    curves: dict[str, list[float]] = {}

    def train_encoder(name: str, seed: int, data: Any) -> tuple[Any, dict[str, Any]]:
        options = {
            **DEFAULT_OPTIONS, "epochs": epochs, "patience": patience, "seed": seed,
            "heads": heads, "dropout": dropout, "mask_seen": mask_seen,
        }  # fmt: skip
        trainer, result = fit_encoder(name, layout, data, options)
        curves[f"{name} seed {seed}"] = [r.valid_ndcg10 for r in result.history]
        return trainer.scores, {
            "best_epoch": result.best_epoch,
            "seconds": result.seconds,
            "seconds_per_epoch": result.seconds / max(1, len(result.history)),
            "peak_memory_mb": result.peak_memory_mb,
        }

    names = models.split(",")
    seed_list = [int(s) for s in seeds.split(",")]
    report: dict[str, Any] = {}
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
            )  # fmt: skip
            shown = ["model", "seeds", "js_divergence", "top_topic_accuracy"]
        else:
            raise ValueError(f"unknown protocol {name!r}: use loo, cold-start or evolution")
        frame = protocol.as_table(results)[shown]
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
        Path, typer.Option(help="TF Serving's model config file whose label it sets.")
    ] = Path("serving/models.config"),
    config: ConfigOption = None,
) -> None:
    """Publish an exported model version into TF Serving's base path (and set a label)."""
    from evorec.encoder.bundle import model_versions
    from evorec.encoder.publish import publish, set_version_label

    settings = load_settings(config)
    if version_dir is None:
        model_dir = settings.serving.model_dir(settings.data_dir)
        versions = model_versions(model_dir)
        if not versions:
            raise RuntimeError(f"no exported version under {model_dir}: run `evorec train`")
        version_dir = model_dir / str(versions[-1])
    target = publish(version_dir, base)
    console.print(f"published {version_dir} as {target}")
    if label is not None:
        set_version_label(model_config, target.parent.name, label, int(target.name))
        console.print(f"{model_config}: label {label} -> version {target.name}")
