"""Long-lived objects kept out of the garbage collector's full passes.

A served process builds most of its objects once, at start-up (modules, the model, the
catalog), and keeps them as long as it runs. CPython's full collections walk all of them,
several times a second under load, holding the GIL: in the interest service at full ingest
they stalled the writer regularly (BENCHMARKS.md, "Ingest, second step"). `gc.freeze()` moves
what exists into a generation those passes skip; objects freed later by reference counting
still go, but frozen cycles are never collected, so a long-lived part that is replaced (a
model version) is followed by `refreeze`.
"""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Collects what start-up left behind, then freezes the rest."""
    gc.collect()
    gc.freeze()


def refreeze() -> None:
    """After a frozen long-lived part was dropped: lets the collector free its cycles, then
    freezes what remains. Only in a process that froze (not, say, a test runner)."""
    if gc.get_freeze_count():
        gc.unfreeze()
        freeze_long_lived()
