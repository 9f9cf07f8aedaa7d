"""What export stores about interest evolution beside the model: the hidden Markov model and
each forecast's track record, from which the service recommends a method per history length.

The track record is measured on the leave-one-out validation split: every user's training
sequence is the history, the validation item's topic is what happened next. The encoder never
trained on that item, and the hidden Markov model is fitted on the training sequences only,
so no method has seen the answer. It is therefore a next-1 score (`score_horizon`);
`evorec evaluate --protocols evolution` measures longer horizons.

Files in the bundle: `evolution.json` (the scores) and `hmm.json` (the model); an
older export has neither, and a dataset too small for a hidden Markov model has no `hmm.json`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evorec.evolution import methods
from evorec.evolution.hmm import InterestHMM, fit_interest_hmm
from evorec.topic_distributions import Distribution

EVOLUTION_FILE = "evolution.json"
HMM_FILE = "hmm.json"
SCORE_HORIZON = 1
# Bands of history length (events with a topic), by lower bound; a method's score is kept
# per band, because the last window is hard to beat on a short history and easy on a long one.
BANDS = (1, 10, 50)
ALL = "all"
# A band's score is used to recommend only when this many users were measured in it.
MIN_USERS = 20


def band(length: int) -> str:
    """`1-9`, `10-49`, `50+`: the band of a history of `length` events."""
    lower = max(b for b in (0, *BANDS) if b <= length)
    if lower == 0:
        return "0"
    following = [b for b in BANDS if b > lower]
    return f"{lower}-{following[0] - 1}" if following else f"{lower}+"


@dataclass
class EvolutionModel:
    """The evolution part of a model bundle."""

    # method -> band (or "all") -> js_divergence, top_topic_accuracy, users
    scores: dict[str, dict[str, dict[str, float]]]
    hmm: InterestHMM | None
    score_horizon: int = SCORE_HORIZON

    def score_of(self, method: str, length: int) -> tuple[str, dict[str, float]] | None:
        """The method's score on histories as long as `length`, with the band it was measured
        on (`all` where that band had too few users); None without a track record."""
        by_band = self.scores.get(method, {})
        name = band(length)
        found = by_band.get(name)
        if found is not None and found["users"] >= MIN_USERS:
            return name, found
        return (ALL, by_band[ALL]) if ALL in by_band else None

    def recommended(self, length: int, available: Collection[str]) -> str | None:
        """The available method with the lowest divergence on histories like this one."""
        scored = {m: self.score_of(m, length) for m in available}
        known = {m: s[1]["js_divergence"] for m, s in scored.items() if s is not None}
        return min(known, key=lambda m: (known[m], m)) if known else None

    def write(self, folder: Path) -> None:
        (folder / EVOLUTION_FILE).write_text(
            json.dumps(
                {
                    "score_horizon": self.score_horizon,
                    "scores": self.scores,
                },
                indent=1,
            )
            + "\n"
        )
        if self.hmm is not None:
            (folder / HMM_FILE).write_text(json.dumps(self.hmm.to_json()) + "\n")

    @classmethod
    def load(cls, folder: Path) -> EvolutionModel | None:
        """The evolution part of the bundle in `folder`; None for an export that predates it."""
        path = folder / EVOLUTION_FILE
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        hmm_path = folder / HMM_FILE
        return cls(
            scores=data["scores"],
            hmm=InterestHMM.from_json(json.loads(hmm_path.read_text()))
            if hmm_path.exists()
            else None,
            score_horizon=int(data["score_horizon"]),
        )


def forecasts(
    topics: Sequence[str],
    encoder_first: Distribution | None,
    hmm: InterestHMM | None,
    horizon: int,
) -> dict[str, Distribution]:
    """Each method's forecast of the next `horizon` topics after `topics` (a method that
    cannot answer, the encoder without a distribution or a missing model, is left out)."""
    found = {
        methods.TOPIC_MARKOV: methods.topic_markov(topics, horizon),
        methods.LAST_WINDOW: methods.last_window(topics),
    }
    if encoder_first is not None:
        found[methods.ENCODER] = methods.encoder(encoder_first, topics, horizon)
    if hmm is not None:
        found[methods.HIDDEN_MARKOV] = hmm.mean_forecast(hmm.codes(topics), horizon)
    return found


def fit_evolution(
    histories: Sequence[Sequence[str]],
    next_topics: Sequence[str],
    encoder_first: Sequence[Distribution],
    topic_labels: dict[str, str],
    seed: int = 0,
) -> EvolutionModel:
    """Fits the hidden Markov model on `histories` (every user's topics,
    oldest first) and scores each method against `next_topics` ("" where the next item has
    no topic: that user is not scored); `encoder_first` is the encoder's next-topic
    distribution for each history."""
    hmm = fit_interest_hmm(histories, topic_labels, seed=seed)
    predictions: dict[str, dict[str, list[Distribution]]] = {}
    actual: dict[str, list[Distribution]] = {}
    for topics, following, first in zip(histories, next_topics, encoder_first, strict=True):
        if not following or not topics:
            continue
        groups = (ALL, band(len(topics)))
        for group in groups:
            actual.setdefault(group, []).append({following: 1.0})
        for method, forecast in forecasts(topics, first, hmm, SCORE_HORIZON).items():
            for group in groups:
                predictions.setdefault(method, {}).setdefault(group, []).append(forecast)
    scores = {
        method: {
            group: {
                **methods.score(forecast, actual[group]),
                "users": float(len(actual[group])),
            }
            for group, forecast in by_group.items()
        }
        for method, by_group in predictions.items()
    }
    return EvolutionModel(scores=scores, hmm=hmm)
