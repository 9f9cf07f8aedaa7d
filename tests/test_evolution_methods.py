"""The forecasts without hidden state and their scoring, on sequences worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from evorec.evolution import methods


def test_last_window_counts_the_newest_events() -> None:
    topics = ["x"] * 20 + ["a"] * 7 + ["b"] * 3
    assert methods.last_window(topics) == {"a": 0.7, "b": 0.3}


def test_topic_markov_follows_the_users_own_transitions() -> None:
    # a -> b always, b -> a always: from b, the next two steps are a then b.
    assert methods.topic_markov(["a", "b", "a", "b"], 2) == {"a": 0.5, "b": 0.5}
    assert methods.topic_markov(["a", "b", "a", "b"], 1) == {"a": 1.0}


def test_transitions_count_consecutive_topics() -> None:
    transitions = methods.transitions([["a", "b"], ["a", "a", "b"]])
    assert transitions == {"a": {"a": 1 / 3, "b": 2 / 3}}


def test_the_encoders_first_step_is_rolled_forward_by_the_users_own_transitions() -> None:
    # The user always went a -> b and stayed on b: steps a, b, b, b.
    assert methods.encoder({"a": 1.0}, ["a", "b", "b"], 4) == pytest.approx({"a": 0.25, "b": 0.75})


def test_rolling_forward() -> None:
    transitions = {"a": {"b": 1.0}, "b": {"b": 1.0}}
    assert methods.roll_forward({"a": 1.0}, transitions, 1) == {"a": 1.0}
    # Steps: a, b, b, b.
    assert methods.roll_forward({"a": 1.0}, transitions, 4) == pytest.approx({"a": 0.25, "b": 0.75})
    # A topic no one ever left stays.
    assert methods.roll_forward({"c": 1.0}, transitions, 3) == {"c": 1.0}


def test_next_item_probabilities_are_summed_per_topic() -> None:
    scores = np.log(np.array([[5.0, 1.0, 1.0, 2.0]]))  # column 0 is padding
    probabilities = methods.next_item_probabilities(scores)
    assert probabilities[0].tolist() == pytest.approx([0.0, 0.25, 0.25, 0.5])
    (mass,) = methods.topic_mass(probabilities, ["", "a", "b", "b"])
    assert mass == pytest.approx({"a": 0.25, "b": 0.75})


def test_an_empty_prediction_scores_as_the_worst_case_and_is_counted() -> None:
    actual = [{"a": 1.0}, {"b": 1.0}]
    assert methods.score([{"a": 1.0}, {"b": 1.0}], actual) == {
        "js_divergence": 0.0,
        "top_topic_accuracy": 1.0,
        "empty_predictions": 0.0,
    }
    assert methods.score([{"a": 1.0}, {}], actual) == {
        "js_divergence": 0.5,
        "top_topic_accuracy": 0.5,
        "empty_predictions": 1.0,
    }
