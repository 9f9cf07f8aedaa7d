"""The ranking service's copy of the item catalog, kept fresh from the embedding service's
`ListItems`, so that an item upserted minutes ago can be recommended.

Only changes are fetched after the first sync (the catalog numbers its changes); when the
embedding service restarted, its catalog id changes and the mirror lists everything again.
When the embedding service cannot be reached, the mirror keeps what it has and reports
itself stale after a while.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import numpy as np

from evorec.platform import context
from evorec.v1 import embedding_pb2, embedding_pb2_grpc

log = logging.getLogger("evorec.ranking")
OK = embedding_pb2.VECTOR_STATUS_OK
POLL_METADATA = ((context.POLL_KEY, "1"),)


@dataclass(frozen=True, slots=True)
class MirroredItem:
    """What ranking needs of a catalog item. Slotted: a mirror of a million items holds a
    million of them, and a per-instance dict would cost about 100 bytes each."""

    item_id: str
    title: str
    topic_id: str
    # The SIF text vector (unit length), or None without usable text.
    vector: np.ndarray | None


class CatalogMirror:
    """Items by id, as of `revision` of the catalog `catalog_id`."""

    def __init__(
        self, stub: embedding_pb2_grpc.EmbeddingServiceAsyncStub, stale_after_s: float
    ) -> None:
        self.stub = stub
        self.stale_after_s = stale_after_s
        self.items: dict[str, MirroredItem] = {}
        self.revision = 0
        self.catalog_id = ""
        # Counts the syncs that changed something, so that derived tables know to rebuild.
        self.generation = 0
        self.last_success: float | None = None

    @property
    def stale(self) -> bool:
        return (
            self.last_success is None or time.monotonic() - self.last_success > self.stale_after_s
        )

    async def sync(self) -> bool:
        """Fetches every change since the last sync; True when there was one. Raises
        grpc.aio.AioRpcError when the embedding service cannot answer. After a restart of
        the catalog the listing goes into a new dict, which replaces `items` only once it
        is complete: a listing cut short leaves the items as they were, not empty."""
        try:
            changed, revision, catalog_id = await self._fetch(
                self.items, self.revision, self.catalog_id
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION or not self.catalog_id:
                raise
            log.info("the catalog restarted: listing it again")
            items: dict[str, MirroredItem] = {}
            _, revision, catalog_id = await self._fetch(items, 0, "")
            self.items, changed = items, True
        self.revision, self.catalog_id = revision, catalog_id
        self.last_success = time.monotonic()
        if changed:
            self.generation += 1
        return changed

    async def _fetch(
        self, items: dict[str, MirroredItem], revision: int, catalog_id: str
    ) -> tuple[bool, int, str]:
        """Puts the changes after `revision` of catalog `catalog_id` ("": any, from the
        start) into `items`, page by page; returns whether there were any, and the revision
        and catalog id reached."""
        changed = False
        while True:
            request = embedding_pb2.ListItemsRequest(after_revision=revision, catalog_id=catalog_id)
            response = await self.stub.ListItems(request, metadata=POLL_METADATA)
            for entry in response.items:
                vector = entry.vector
                items[entry.item.item_id] = MirroredItem(
                    item_id=entry.item.item_id,
                    title=entry.item.title,
                    topic_id=sys.intern(entry.vector.topic_id or entry.item.topic_id),
                    vector=np.asarray(vector.vector.values, dtype=np.float32)
                    if vector.status == OK
                    else None,
                )
            changed = changed or bool(response.items)
            revision, catalog_id = response.revision, response.catalog_id
            if not response.has_more:
                return changed, revision, catalog_id

    async def watch(
        self, interval_s: float, on_change: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Syncs every `interval_s` until cancelled, awaiting `on_change` after a sync that
        changed something; failures are logged, not raised."""
        while True:
            try:
                if await self.sync() and on_change is not None:
                    await on_change()
            except grpc.aio.AioRpcError as error:
                log.warning("cannot reach the catalog: %s", error.details() or error.code().name)
            await asyncio.sleep(interval_s)
