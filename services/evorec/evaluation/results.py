"""The results of an evaluation: each model's metrics per seed, and the table they make."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class ModelResult:
    """One model's test metrics per seed, and training details of encoders."""

    model: str
    runs: list[dict[str, float]] = field(default_factory=list)
    training: list[dict[str, Any]] = field(default_factory=list)

    def mean(self) -> dict[str, float]:
        return {k: statistics.fmean(r[k] for r in self.runs) for k in self.runs[0]}

    def spread(self) -> dict[str, float]:
        if len(self.runs) < 2:
            return {k: 0.0 for k in self.runs[0]}
        return {k: statistics.stdev(r[k] for r in self.runs) for k in self.runs[0]}


TABLE_METRICS = ("ndcg@10", "hr@10", "ndcg@5", "hr@5", "ndcg@20", "hr@20", "mrr")
TABLE_EXTRAS = (
    "coverage", "diversity", "novelty",
    "recall@10", "recall@20", "js_divergence", "top_topic_accuracy",
)  # fmt: skip
# Counts, shown as their mean without decimals.
TABLE_COUNTS = {"empty_predictions": "empty"}


def as_table(results: list[ModelResult]) -> pd.DataFrame:
    """Mean (and, over several seeds, ± standard deviation) of each metric per model."""
    rows = []
    for result in results:
        mean, spread = result.mean(), result.spread()
        row: dict[str, object] = {"model": result.model, "seeds": len(result.runs)}
        for key in (*TABLE_METRICS, *TABLE_EXTRAS):
            if key in mean:
                several = len(result.runs) > 1
                row[key] = f"{mean[key]:.4f} ± {spread[key]:.4f}" if several else f"{mean[key]:.4f}"
        for key, column in TABLE_COUNTS.items():
            if key in mean:
                row[column] = f"{mean[key]:.0f}"
        rows.append(row)
    return pd.DataFrame(rows)
