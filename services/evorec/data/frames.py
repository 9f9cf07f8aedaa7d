"""Memory pyarrow keeps after a long-running process has read a large table.

pandas holds a parquet table's string columns in pyarrow's memory, which comes from
pyarrow's own pool (mimalloc by default), and the pool keeps the pages freed since for its
next allocation. A service reads its large tables once (at start, at a new model version)
and turns their columns into Python lists and numpy arrays, so those pages are then held for
nothing: hundreds of MiB in the ranking service after it loads a bundle of a million items
(`scripts/ranking_memory.py`, its bundle step).
"""

from __future__ import annotations

import pyarrow as pa


def release_arrow_memory() -> None:
    """Returns the pages pyarrow's pool holds unused to the system; call it once the tables
    read are converted and dropped."""
    pa.default_memory_pool().release_unused()
