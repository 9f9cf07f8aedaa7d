"""A hidden Markov model of interest states: latent regimes (say "mostly sport", "sport and
music") that each emit topics with their own probabilities, and switch from one to another
with learned probabilities.

Fitted by hmmlearn's `CategoricalHMM` (Baum-Welch) on all users' topic sequences, one
sequence per user; the number of states is the candidate with the lowest Bayesian
information criterion, -2 log L + parameters x log(events): the likelihood alone always
prefers more states (on held-out users too, by margins smaller than their noise).
A state is labelled by its dominant topics. Per user:

- `posterior`: the distribution over states now, given the whole history (the forward
  algorithm; at the last step the smoothed posterior is the filtered one);
- `path`: the most likely state sequence (Viterbi), and `regime_changes`, where it switches;
- `forecast`: the topic distribution of each of the next N interactions, pi_t A^k B_u, where
  B_u is the states' emissions adapted to the user's own history (see `user_emissions`).

Stored as JSON beside the model (`hmm.json`), so serving needs no pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hmmlearn.hmm import CategoricalHMM

from evorec.topic_distributions import Distribution, normalized

STATE_CANDIDATES = (2, 4, 8)
ITERATIONS = 30
RESTARTS = 1
# The initial regimes: how likely a state stays, and how much it leans towards its topic.
START_STAY = 0.9
START_LEANING = 0.5
# Users are sampled down to about this many events to fit (Baum-Welch is linear in events;
# on the 2-core development machine about 1 s per 1,000 events for the three candidates).
MAX_FIT_EVENTS = 30_000
EMISSION_FLOOR = 1e-6
# Pseudo-events of the population's emissions in a user's own (see `user_emissions`).
PRIOR_EVENTS = 2.0
DOMINANT_TOPICS = 2


@dataclass
class InterestHMM:
    """A fitted model: `topics[c]` is the topic that symbol c stands for."""

    topics: list[str]
    start: np.ndarray  # [states]
    transitions: np.ndarray  # [states, states], rows sum to 1
    emissions: np.ndarray  # [states, topics], rows sum to 1
    labels: list[str]  # per state, its dominant topics' labels
    # The Bayesian information criterion of each candidate number of states (lower is better).
    selection: dict[int, float] = field(default_factory=dict)

    @property
    def n_states(self) -> int:
        return len(self.start)

    def codes(self, topics: Sequence[str]) -> np.ndarray:
        """`topics` as symbols; topics the model never saw are left out."""
        index = {t: c for c, t in enumerate(self.topics)}
        return np.array([index[t] for t in topics if t in index], dtype=np.int64)

    def _model(self) -> CategoricalHMM:
        model = CategoricalHMM(n_components=self.n_states, n_features=len(self.topics))
        model.startprob_ = self.start
        model.transmat_ = self.transitions
        model.emissionprob_ = self.emissions
        return model

    def posterior(self, codes: np.ndarray) -> np.ndarray:
        """P(state now | history): the start distribution for an empty history."""
        if len(codes) == 0:
            return self.start.copy()
        posterior: np.ndarray = self._model().predict_proba(codes.reshape(-1, 1))[-1]
        return posterior

    def path(self, codes: np.ndarray) -> np.ndarray:
        """The most likely state of each event (Viterbi)."""
        if len(codes) == 0:
            return np.zeros(0, dtype=np.int64)
        _, states = self._model().decode(codes.reshape(-1, 1), algorithm="viterbi")
        return np.asarray(states, dtype=np.int64)

    def user_emissions(self, codes: np.ndarray) -> np.ndarray:
        """Each state's topics for this user: the topics of the user's events weighted by
        their posterior in the state, with PRIOR_EVENTS pseudo-events of the population's
        (maximum a posteriori adaptation). The states are shared regimes of how interests
        move; within one, a user's own favourite topics are theirs, which a population's
        few states cannot hold for every user."""
        if len(codes) == 0:
            return self.emissions
        weights = self._model().predict_proba(codes.reshape(-1, 1))  # [events, states]
        counts = weights.T @ np.eye(len(self.topics))[codes]
        adapted: np.ndarray = (counts + PRIOR_EVENTS * self.emissions) / (
            counts.sum(axis=1, keepdims=True) + PRIOR_EVENTS
        )
        return adapted

    def forecast(self, codes: np.ndarray, horizon: int) -> list[Distribution]:
        """The topic distribution of each of the next `horizon` interactions: the state
        posterior now moved k steps by the transitions, through the user's emissions."""
        state = self.posterior(codes)
        emissions = self.user_emissions(codes)
        steps = []
        for _ in range(horizon):
            state = state @ self.transitions
            steps.append(self._distribution(state @ emissions))
        return steps

    def mean_forecast(self, codes: np.ndarray, horizon: int) -> Distribution:
        """The topic distribution of the next `horizon` interactions together."""
        steps = self.forecast(codes, horizon)
        total: dict[str, float] = {}
        for step in steps:
            for topic, p in step.items():
                total[topic] = total.get(topic, 0.0) + p
        return normalized(total)

    def _distribution(self, weights: np.ndarray) -> Distribution:
        return normalized(dict(zip(self.topics, weights.tolist(), strict=True)))

    def to_json(self) -> dict[str, Any]:
        return {
            "topics": self.topics,
            "start": self.start.tolist(),
            "transitions": self.transitions.tolist(),
            "emissions": self.emissions.tolist(),
            "labels": self.labels,
            "selection": {str(k): v for k, v in self.selection.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InterestHMM:
        return cls(
            topics=list(data["topics"]),
            start=np.array(data["start"]),
            transitions=np.array(data["transitions"]),
            emissions=np.array(data["emissions"]),
            labels=list(data["labels"]),
            selection={int(k): float(v) for k, v in data["selection"].items()},
        )


def regime_changes(path: np.ndarray) -> list[int]:
    """The positions where the state path switches (the event that starts a new regime)."""
    return [int(i) for i in np.flatnonzero(path[1:] != path[:-1]) + 1]


def _fit(codes: list[np.ndarray], n_topics: int, n_states: int, seed: int) -> CategoricalHMM:
    """The best of RESTARTS Baum-Welch runs (one by default: the start below rarely stalls,
    and the fit is the slow part of an export). Each starts from sticky regimes, state k leaning
    towards the k-th most frequent topic (with random jitter per restart): from a uniform
    random start, Baum-Welch often stalls where every state emits the overall mix."""
    data, lengths = np.concatenate(codes).reshape(-1, 1), [len(c) for c in codes]
    overall = np.bincount(data.ravel(), minlength=n_topics) / len(data)
    leaning = np.argsort(-overall, kind="stable")
    runs = []
    for restart in range(RESTARTS):
        rng = np.random.default_rng(seed + restart)
        emissions = np.tile(overall, (n_states, 1)) * (1 - START_LEANING)
        emissions[np.arange(n_states), leaning[np.arange(n_states) % n_topics]] += START_LEANING
        emissions *= rng.uniform(0.8, 1.2, emissions.shape)
        transitions = np.full((n_states, n_states), (1 - START_STAY) / max(1, n_states - 1))
        np.fill_diagonal(transitions, START_STAY)
        model = CategoricalHMM(
            n_components=n_states,
            n_features=n_topics,
            n_iter=ITERATIONS,
            tol=1e-2,
            init_params="",
            random_state=seed + restart,
        )
        model.startprob_ = np.full(n_states, 1 / n_states)
        model.transmat_ = transitions
        model.emissionprob_ = emissions / emissions.sum(axis=1, keepdims=True)
        runs.append(model.fit(data, lengths))
    return max(runs, key=lambda run: float(run.score(data, lengths)))


def state_labels(
    emissions: np.ndarray, topics: list[str], topic_labels: dict[str, str]
) -> list[str]:
    """Each state named by its DOMINANT_TOPICS most likely topics, `label (share)`."""
    labels = []
    for row in emissions:
        top = np.argsort(-row, kind="stable")[:DOMINANT_TOPICS]
        labels.append(
            " + ".join(f"{topic_labels.get(topics[t], topics[t])} ({row[t]:.0%})" for t in top)
        )
    return labels


def fit_interest_hmm(
    sequences: Sequence[Sequence[str]],
    topic_labels: dict[str, str],
    candidates: Sequence[int] = STATE_CANDIDATES,
    seed: int = 0,
) -> InterestHMM | None:
    """The model of users' topic `sequences`, its number of states the candidate with the
    lowest BIC; None when there is too little to fit (fewer than 2 topics or 5 usable users)."""
    topics = sorted({t for s in sequences for t in s if t})
    index = {t: c for c, t in enumerate(topics)}
    codes = [np.array([index[t] for t in s if t], dtype=np.int64) for s in sequences]
    codes = [c for c in codes if len(c) >= 2]
    if len(topics) < 2 or len(codes) < 5:
        return None
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(codes))
    kept = np.cumsum([len(codes[i]) for i in order]) <= MAX_FIT_EVENTS
    kept[0] = True
    codes = [codes[i] for i in order[kept]]
    data, lengths = np.concatenate(codes).reshape(-1, 1), [len(c) for c in codes]
    fitted = {n: _fit(codes, len(topics), n, seed) for n in candidates}
    selection = {n: float(model.bic(data, lengths)) for n, model in fitted.items()}
    model = fitted[min(selection, key=lambda n: (selection[n], n))]
    # A topic the fit gave no weight (absent from the sampled users) must not make a user's
    # history impossible: every state keeps a floor of probability for every topic.
    emissions = np.asarray(model.emissionprob_) + EMISSION_FLOOR
    emissions /= emissions.sum(axis=1, keepdims=True)
    return InterestHMM(
        topics=topics,
        start=np.asarray(model.startprob_),
        transitions=np.asarray(model.transmat_),
        emissions=emissions,
        labels=state_labels(emissions, topics, topic_labels),
        selection=selection,
    )
