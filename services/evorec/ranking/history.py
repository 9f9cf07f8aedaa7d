"""Users' newest items for ranking, read from the InterestService in shared calls.

Every stored user's answer needs their newest items, and one GetRecentItems call per request
cost more than the rest of the answer: a gRPC call in Python on both sides, and a thread hop
in the interest service, for a few hundred bytes. So one call runs at a time, and the users
of the requests that arrive meanwhile go together in the next (`user_ids`, up to
MAX_USERS_PER_CALL); a lone request on an idle service is asked for at once, alone. Nothing
is cached: each call reads the store anew, so an event the interest service acknowledged
before a request arrived is in that request's answer (read-your-writes).

Each request waits for its own time limit only; a call carries the latest of its requests'
limits, so that one short deadline does not fail the others.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass, field

import grpc

from evorec.platform.errors import field_violations
from evorec.v1 import interest_pb2, interest_pb2_grpc

log = logging.getLogger("evorec.ranking")
# Users per GetRecentItems call: the interest service's limit (MAX_RECENT_USERS).
MAX_USERS_PER_CALL = 256


@dataclass
class _Waiting:
    user_id: str
    deadline: float | None  # time.monotonic(); None: the client's default
    future: asyncio.Future[interest_pb2.RecentItems] = field(repr=False)


class RecentItemsReader:
    """Answers `recent(user_id)` from GetRecentItems calls shared by concurrent requests."""

    def __init__(self, stub: interest_pb2_grpc.InterestServiceAsyncStub, limit: int) -> None:
        self.stub = stub
        self.limit = limit
        self.queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        # False once the interest service turned down a call for several users (a version
        # from before `user_ids`): each user is then asked for alone, as before.
        self.shared_calls = True

    async def recent(self, user_id: str, time_limit: float | None) -> interest_pb2.RecentItems:
        """The user's newest items, newest first. Raises grpc.aio.AioRpcError when the call
        failed, TimeoutError when `time_limit` seconds passed first."""
        if self.worker is None:
            # A context of its own: the first caller's would lend every later call its
            # deadline and request id (the client interceptor passes them on).
            self.worker = asyncio.create_task(self._work(), context=contextvars.Context())
        future: asyncio.Future[interest_pb2.RecentItems] = (
            asyncio.get_running_loop().create_future()
        )
        deadline = None if time_limit is None else time.monotonic() + time_limit
        self.queue.put_nowait(_Waiting(user_id, deadline, future))
        # On time out wait_for cancels the future, and the worker leaves it out.
        return await asyncio.wait_for(future, time_limit)

    async def _next_batch(self) -> list[_Waiting]:
        batch = [await self.queue.get()]
        while len(batch) < MAX_USERS_PER_CALL and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return [w for w in batch if not w.future.done()]

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            deadlines = [w.deadline for w in batch]
            timeout = (
                None
                if None in deadlines
                else max(0.0, max(d for d in deadlines if d is not None) - time.monotonic())
            )
            try:
                found = await self._read([w.user_id for w in batch], timeout)
            except Exception as error:  # every waiting caller gets it, and handles it
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(error)
                continue
            for waiting, items in zip(batch, found, strict=True):
                if not waiting.future.done():
                    waiting.future.set_result(items)

    async def _read(
        self, user_ids: list[str], time_limit: float | None
    ) -> list[interest_pb2.RecentItems]:
        if len(user_ids) == 1 or not self.shared_calls:
            return list(await asyncio.gather(*(self._one(u, time_limit) for u in user_ids)))
        try:
            response = await self.stub.GetRecentItems(
                interest_pb2.GetRecentItemsRequest(user_ids=user_ids, limit=self.limit),
                timeout=time_limit,
            )
        except grpc.aio.AioRpcError as error:
            if _too_large(error):  # the users' items fill more than one message: halves
                half = len(user_ids) // 2
                first, second = await asyncio.gather(
                    self._read(user_ids[:half], time_limit), self._read(user_ids[half:], time_limit)
                )
                return first + second
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            log.warning(
                "the interest service does not take several users per call (%s): asking"
                " for each user alone",
                error.details(),
            )
            self.shared_calls = False
            return await self._read(user_ids, time_limit)
        if len(response.users) != len(user_ids):
            raise RuntimeError(
                f"GetRecentItems answered {len(response.users)} users for {len(user_ids)}"
            )
        return list(response.users)

    async def _one(self, user_id: str, time_limit: float | None) -> interest_pb2.RecentItems:
        response = await self.stub.GetRecentItems(
            interest_pb2.GetRecentItemsRequest(user_id=user_id, limit=self.limit),
            timeout=time_limit,
        )
        return interest_pb2.RecentItems(item_ids=response.item_ids, types=response.types)

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)


def _too_large(error: grpc.aio.AioRpcError) -> bool:
    """Whether the interest service refused a call because its answer would not fit in one
    message (RESOURCE_EXHAUSTED naming `user_ids`), not because it is overloaded (which
    names no field, and which more calls would only make worse)."""
    return error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and any(
        v.field == "user_ids" for v in field_violations(error)
    )
