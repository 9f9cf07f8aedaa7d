"""The memory SQLite holds in this process, as a Prometheus gauge.

Why: the interest service's resident memory grows while events are written, and from outside
that growth cannot be told apart from a leak. Most of it is SQLite's own heap: each
connection's page cache (the writer's bounded by `store.WRITER_CACHE_KIB`, each reader's by
SQLite's default of 2 MiB), parsed schemas and prepared statements. SQLite counts that heap
itself (`sqlite3_memory_used`, for every connection of the process); Python's `sqlite3` does
not expose the count, so it is read through ctypes from the library that module is linked
with. Where that symbol cannot be found, the gauge is simply not served.
"""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Callable

from prometheus_client import Gauge


def sqlite_heap_reader() -> Callable[[], float] | None:
    """A function that returns the bytes SQLite's allocator holds now, or None where this
    Python's sqlite3 module does not make that count reachable."""
    # The C module behind `sqlite3`: SQLite is linked into it or is a library it loads, and
    # a symbol looked up through its handle is searched in both.
    spec = importlib.util.find_spec("_sqlite3")
    if spec is None or spec.origin is None:
        return None
    try:
        memory_used = ctypes.CDLL(spec.origin).sqlite3_memory_used
    except (OSError, AttributeError):
        return None
    memory_used.restype = ctypes.c_int64
    memory_used.argtypes = []
    return lambda: float(memory_used())


def sqlite_heap_gauge() -> Gauge | None:
    """`evorec_sqlite_heap_bytes`, for the service's own registry (`GrpcService.collectors`)."""
    read = sqlite_heap_reader()
    if read is None:
        return None
    gauge = Gauge(
        "evorec_sqlite_heap_bytes",
        "Bytes SQLite's allocator holds in this process (page caches, schemas, statements),"
        " as sqlite3_memory_used() counts them.",
        registry=None,
    )
    gauge.set_function(read)
    return gauge
