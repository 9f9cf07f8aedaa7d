"""The SQLite heap gauge: what it reads moves with SQLite's caches, and the interest service
serves it on its metrics port."""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.request
from pathlib import Path

from evorec.interest.sqlite_memory import sqlite_heap_reader
from tests.conftest import Stack

MIB = 2**20


def test_the_heap_grows_with_a_page_cache_and_falls_when_its_connection_closes(
    tmp_path: Path,
) -> None:
    read = sqlite_heap_reader()
    assert read is not None  # CPython on Linux links SQLite dynamically or statically: both work
    before = read()
    connection = sqlite3.connect(tmp_path / "cache.sqlite")
    connection.execute("PRAGMA cache_size=-65536")
    connection.execute("CREATE TABLE t (x TEXT)")
    connection.executemany("INSERT INTO t VALUES (?)", ((f"{n:08d}" * 32,) for n in range(60_000)))
    connection.commit()
    filled = read()
    assert filled - before > 10 * MIB  # the ~16 MiB table's pages stay in the cache
    connection.close()
    assert read() - before < 2 * MIB


async def test_the_interest_service_serves_its_sqlite_heap(stack: Stack) -> None:
    server = await stack.start("interest")
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    lines = [
        line
        for line in (await asyncio.to_thread(scrape)).splitlines()
        if line.startswith("evorec_sqlite_heap_bytes ")
    ]
    assert len(lines) == 1
    assert float(lines[0].split()[1]) > 0
