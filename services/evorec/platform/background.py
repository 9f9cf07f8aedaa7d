"""Work a service does beside its RPCs (polling, retention, back-fills): loops started with
the service and, when it stops, cancelled and awaited, so none outlives it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any


class BackgroundTasks:
    """The background loops of one service."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, loop: Coroutine[Any, Any, None], name: str) -> None:
        self.tasks.append(asyncio.create_task(loop, name=name))

    async def stop(self) -> None:
        """Cancels every loop and waits until each has ended."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


async def every(
    interval_s: float, step: Callable[[], Awaitable[None]], log: logging.Logger, what: str
) -> None:
    """Runs `step` every `interval_s` until cancelled; a failed step is logged and the next
    one runs on time."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await step()
        except Exception:
            log.exception("%s failed; will try again", what)
