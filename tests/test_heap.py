"""Frozen long-lived objects: kept out of full collections, and freed again by `refreeze`.

Each case runs in a fresh interpreter, since freezing the test runner's heap would keep
every later test's garbage cycles alive."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = """
import gc, weakref
from evorec.platform.heap import freeze_long_lived, refreeze

class Model:  # a long-lived part with a reference cycle, as TensorFlow's objects have
    def __init__(self):
        self.me = self

model = Model()
alive = weakref.ref(model)
freeze_long_lived()
del model
gc.collect()
print(alive() is not None)  # frozen: a full collection leaves its cycle alone
refreeze()
print(alive() is None)  # unfrozen, collected, the rest frozen again
print(gc.get_freeze_count() > 0)
"""


def run(script: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_dropped_frozen_cycle_is_freed_by_refreeze() -> None:
    assert run(SCRIPT) == ["True", "True", "True"]


def test_refreeze_freezes_nothing_in_a_process_that_never_froze() -> None:
    script = "import gc\nfrom evorec.platform.heap import refreeze\nrefreeze()\n"
    assert run(script + "print(gc.get_freeze_count())") == ["0"]
