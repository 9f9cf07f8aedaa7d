"""Cutting a sequence into runs bounded by size: what one gRPC message or call may carry."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def runs_within(
    items: Iterable[T], size: Callable[[T], int], budget: int, max_count: int | None = None
) -> Iterator[list[T]]:
    """`items` in order, in runs whose sizes add up to at most `budget` and that hold at most
    `max_count` items; a run holds at least one item, whatever its size (so that an item
    larger than the budget still goes, alone, and its receiver says what is wrong). Lazy:
    a reader of the first run reads only the items it holds and the next."""
    run: list[T] = []
    used = 0
    for item in items:
        cost = size(item)
        if run and (used + cost > budget or len(run) == max_count):
            yield run
            run, used = [], 0
        run.append(item)
        used += cost
    if run:
        yield run
