"""Plots of an evaluation: metrics per model, and validation curves of training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evorec.evaluation.protocol import ModelResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(results: list[ModelResult], path: Path) -> None:
    """NDCG@10 and HR@10 per model (mean over seeds, with the spread as error bars)."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    names = [r.model for r in results]
    for axis, metric in zip(axes, ("ndcg@10", "hr@10"), strict=True):
        axis.bar(
            names, [r.mean()[metric] for r in results], yerr=[r.spread()[metric] for r in results]
        )
        axis.set_title(f"test {metric.upper()} (seen items excluded)")
        axis.tick_params(axis="x", rotation=30)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_curves(curves: dict[str, list[float]], path: Path) -> None:
    """Validation NDCG@10 per epoch of each training run."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 4), constrained_layout=True)
    for label, values in curves.items():
        axis.plot(range(1, len(values) + 1), values, label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation NDCG@10")
    axis.legend(fontsize="small")
    figure.savefig(path, dpi=100)
    plt.close(figure)
