"""Plots of an evaluation: metrics per model, validation curves of training, and a few
users' interest timelines with the predicted next distribution beside the actual one."""

from __future__ import annotations

from pathlib import Path

from evorec.evaluation.results import ModelResult
from evorec.plotting import pyplot
from evorec.topic_distributions import Distribution, normalized

TIMELINE_WINDOW = 10


def plot_metrics(results: list[ModelResult], path: Path) -> None:
    """NDCG@10 and HR@10 per model (mean over seeds, with the spread as error bars)."""
    plt = pyplot()
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
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(8, 4), constrained_layout=True)
    for label, values in curves.items():
        axis.plot(range(1, len(values) + 1), values, label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation NDCG@10")
    axis.legend(fontsize="small")
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_timelines(
    history_topics: list[list[str]],
    futures: list[list[str]],
    predictions: dict[str, list[Distribution]],
    path: Path,
    users: int = 3,
) -> None:
    """For the `users` users whose interest moved most (their last window against their
    whole history), the topic shares of each window of their history as stacked areas, then
    the actual distribution of their next events and each method's prediction as bars."""
    from collections import Counter

    plt = pyplot()

    def moved(number: int) -> float:
        topics = history_topics[number]
        whole, last = normalized(Counter(topics)), normalized(Counter(topics[-TIMELINE_WINDOW:]))
        return sum(abs(whole.get(t, 0.0) - last.get(t, 0.0)) for t in set(whole) | set(last))

    chosen = sorted(range(len(history_topics)), key=moved, reverse=True)[:users]
    figure, axes = plt.subplots(
        len(chosen), 2, figsize=(12, 3 * len(chosen)), squeeze=False, constrained_layout=True,
        gridspec_kw={"width_ratios": [3, 2]},
    )  # fmt: skip
    for row, number in enumerate(chosen):
        topics = history_topics[number]
        names = sorted(set(topics) | set(futures[number]))
        windows = [
            normalized(Counter(topics[start : start + TIMELINE_WINDOW]))
            for start in range(0, len(topics), TIMELINE_WINDOW)
        ]
        axes[row][0].stackplot(
            range(len(windows)), [[w.get(t, 0.0) for w in windows] for t in names], labels=names
        )
        axes[row][0].set_title(f"user {number}: topic shares per {TIMELINE_WINDOW} events")
        axes[row][0].set_xlabel("window of the history")
        bars = {"actual next": normalized(Counter(futures[number]))}
        bars |= {name: values[number] for name, values in predictions.items()}
        width = 0.8 / len(bars)
        for shift, (label, distribution) in enumerate(bars.items()):
            axes[row][1].bar(
                [i + shift * width for i in range(len(names))],
                [distribution.get(t, 0.0) for t in names],
                width=width,
                label=label,
            )
        axes[row][1].set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names)
        axes[row][1].tick_params(axis="x", rotation=30)
        axes[row][1].set_title("next events: actual and predicted")
    axes[0][0].legend(fontsize="x-small", loc="upper left")
    axes[0][1].legend(fontsize="x-small")
    figure.savefig(path, dpi=100)
    plt.close(figure)
