"""Runs bounded by size (evorec.platform.runs)."""

from __future__ import annotations

from evorec.platform.runs import runs_within


def test_runs_keep_order_and_their_size_and_count_bounds() -> None:
    sizes = [3, 3, 3, 9, 1, 1, 1, 1]
    runs = list(runs_within(sizes, lambda size: size, budget=6, max_count=3))
    assert runs == [[3, 3], [3], [9], [1, 1, 1], [1]]  # 9 is over the budget: alone


def test_without_a_count_bound_only_the_budget_cuts() -> None:
    assert list(runs_within([1] * 5, lambda size: size, budget=10)) == [[1] * 5]
    assert list(runs_within([], lambda size: size, budget=10)) == []
