"""The hidden Markov model of interest states, fitted on sequences drawn from a known one:
two sticky regimes, one mostly topic `a`, the other mostly `b`."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest

from evorec.evolution.hmm import InterestHMM, fit_interest_hmm, regime_changes


def regimes(rng: np.random.Generator, length: int) -> list[str]:
    """A user who stays in a regime for about 15 events, then switches."""
    state, topics = int(rng.integers(2)), []
    for _ in range(length):
        if rng.random() < 1 / 15:
            state = 1 - state
        own = "ab"[state]
        topics.append(own if rng.random() < 0.9 else "ab"[1 - state])
    return topics


@pytest.fixture(scope="module")
def hmm() -> InterestHMM:
    rng = np.random.default_rng(0)
    fitted = fit_interest_hmm(
        [regimes(rng, 60) for _ in range(60)], {"a": "apples", "b": "bees"}, candidates=(2, 3, 4)
    )
    assert fitted is not None
    return fitted


def test_states_are_chosen_by_bic(hmm: InterestHMM) -> None:
    assert set(hmm.selection) == {2, 3, 4}
    assert hmm.n_states == min(hmm.selection, key=lambda n: (hmm.selection[n], n)) == 2
    assert hmm.topics == ["a", "b"]
    assert np.allclose(hmm.transitions.sum(axis=1), 1)
    assert np.allclose(hmm.emissions.sum(axis=1), 1)


def test_a_switch_of_interest_is_one_regime_change(hmm: InterestHMM) -> None:
    codes = hmm.codes(["a"] * 20 + ["b"] * 20)
    path = hmm.path(codes)
    assert regime_changes(path) == [20]
    now = hmm.posterior(codes)
    assert now.sum() == pytest.approx(1)
    # The state the user is in now emits mostly b, and the next step is forecast as b.
    assert hmm.emissions[int(np.argmax(now)), 1] > 0.8
    first, *_ = hmm.forecast(codes, 5)
    assert first["b"] > 0.7


def test_the_forecast_relaxes_towards_the_stationary_mix(hmm: InterestHMM) -> None:
    steps = hmm.forecast(hmm.codes(["b"] * 30), 100)
    assert len(steps) == 100
    assert steps[0]["b"] > steps[-1]["b"] > 0.3
    mean = hmm.mean_forecast(hmm.codes(["b"] * 30), 100)
    assert sum(mean.values()) == pytest.approx(1)


def test_states_are_labelled_by_their_dominant_topics(hmm: InterestHMM) -> None:
    assert {label.split(" (")[0] for label in hmm.labels} <= {"apples", "bees"}
    assert len(hmm.labels) == hmm.n_states


def test_unknown_topics_are_left_out_and_an_empty_history_starts_from_the_start(
    hmm: InterestHMM,
) -> None:
    assert hmm.codes(["a", "zzz", "b"]).tolist() == [0, 1]
    assert hmm.posterior(hmm.codes([])).tolist() == hmm.start.tolist()
    assert hmm.path(hmm.codes([])).tolist() == []


def test_it_survives_json(hmm: InterestHMM) -> None:
    again = InterestHMM.from_json(hmm.to_json())
    codes = hmm.codes(["a", "b", "b"])
    assert again.posterior(codes) == pytest.approx(hmm.posterior(codes))
    assert again.selection == hmm.selection


def test_too_little_to_fit_is_no_model() -> None:
    assert fit_interest_hmm([["a", "a", "a"]] * 10, {}) is None
    assert fit_interest_hmm([["a", "b"]] * 3, {}) is None


def test_regime_changes_on_a_given_path() -> None:
    assert regime_changes(np.array([0, 0, 1, 1, 0])) == [2, 4]
    assert regime_changes(np.array([3])) == []


def test_a_users_own_topics_shape_the_states_emissions(hmm: InterestHMM) -> None:
    only_a = hmm.codes(["a"] * 30)
    own = hmm.user_emissions(only_a)
    assert np.allclose(own.sum(axis=1), 1)
    # Every state this user was in now emits a more than the population's state does.
    assert (own[:, 0] >= hmm.emissions[:, 0] - 1e-9).all()
    assert hmm.user_emissions(hmm.codes([])).tolist() == hmm.emissions.tolist()


def test_a_topic_missing_from_the_fit_keeps_a_history_possible() -> None:
    rng = np.random.default_rng(1)
    sequences = [regimes(rng, 40) for _ in range(30)] + [["c", "a"]]
    with patch("evorec.evolution.hmm.MAX_FIT_EVENTS", 200):
        fitted = fit_interest_hmm(sequences, {}, candidates=(2,))
    assert fitted is not None
    assert fitted.topics == ["a", "b", "c"]
    assert (fitted.emissions > 0).all()
    posterior = fitted.posterior(fitted.codes(["c", "c", "a"]))
    assert np.isfinite(posterior).all()
    assert posterior.sum() == pytest.approx(1)
