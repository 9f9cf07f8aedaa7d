"""The single writer of the event store: every write runs on one thread, in order, and
ingest calls that arrive together are committed together (group commit), so that concurrent
callers never meet "database is locked" and one fsync serves many calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from evorec.interest.records import NewEvent
from evorec.interest.store import EventStore

T = TypeVar("T")
Outcome = tuple[list[int], list[int]]  # indexes of accepted and of duplicate events


class GroupWriter:
    """See the module docstring. `start` before use, `stop` at the end."""

    def __init__(self, store: EventStore, max_group_events: int) -> None:
        self.store = store
        self.max_group_events = max_group_events
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evorec-writer")
        self.queue: asyncio.Queue[tuple[Sequence[NewEvent], asyncio.Future[Outcome]]] = (
            asyncio.Queue()
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._commit_forever())

    async def stop(self) -> None:
        """Commits what is queued, then stops."""
        await self.queue.join()
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=True)

    async def write(self, events: Sequence[NewEvent]) -> Outcome:
        """Stores `events`; returns once committed, with the indexes the caller gave them.
        The events are handed over: their `index` fields are renumbered on the way."""
        if not events:
            return [], []
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        await self.queue.put((events, future))
        return await future

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """Runs other write work (deletes, retention) on the writer thread, in turn."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)

    async def _commit_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = [await self.queue.get()]
            size = len(group[0][0])
            while not self.queue.empty() and size < self.max_group_events:
                group.append(self.queue.get_nowait())
                size += len(group[-1][0])
            merged: list[NewEvent] = []
            owners: list[tuple[int, int]] = []  # (call, caller's index) by merged position
            for call, (events, _) in enumerate(group):
                for event in events:  # the caller hands its events over: renumber in place
                    owners.append((call, event.index))
                    event.index = len(merged)
                    merged.append(event)
            try:
                accepted, duplicates = await loop.run_in_executor(
                    self.executor, self.store.write, merged
                )
            except Exception as error:
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
                    self.queue.task_done()
                continue
            results: list[Outcome] = [([], []) for _ in group]
            for position in accepted:
                call, index = owners[position]
                results[call][0].append(index)
            for position in duplicates:
                call, index = owners[position]
                results[call][1].append(index)
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)
            for _ in group:
                self.queue.task_done()
