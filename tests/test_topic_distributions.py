"""Jensen-Shannon divergence on distributions worked out by hand."""

from __future__ import annotations

import pytest

from evorec.topic_distributions import js_divergence


def test_identical_distributions_do_not_diverge() -> None:
    assert js_divergence({"a": 0.3, "b": 0.7}, {"b": 0.7, "a": 0.3}) == pytest.approx(0.0)


def test_disjoint_distributions_diverge_by_one_bit() -> None:
    assert js_divergence({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)


def test_a_partial_overlap() -> None:
    # M = (0.75, 0.25): KL(P||M) = log2(4/3) = 0.415037, KL(Q||M) = 0.5 log2(2/3) + 0.5 = 0.207519.
    assert js_divergence({"a": 1.0}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.311278, abs=1e-6)


def test_an_empty_prediction_is_the_worst_case_never_a_perfect_one() -> None:
    assert js_divergence({}, {"a": 1.0}) == 1.0
    assert js_divergence({"a": 1.0}, {}) == 1.0
    assert js_divergence({}, {}) == 0.0
