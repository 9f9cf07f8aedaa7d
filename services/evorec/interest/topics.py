"""Which topic an item has, and what a topic is called: asked of the EmbeddingService and
cached, so that ingest does not wait on it for items already seen.

The cache is bounded and its entries expire: an item's topic is asked again after
TOPIC_TTL_S (an upsert may have changed it), an item the catalog did not know after
UNKNOWN_ITEM_RETRY_S (it may be upserted soon)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable

import grpc

from evorec.v1 import embedding_pb2, embedding_pb2_grpc

log = logging.getLogger("evorec.interest")
TOPIC_TTL_S = 600.0
UNKNOWN_ITEM_RETRY_S = 60.0
MAX_CACHED_ITEMS = 1_000_000
MAX_IDS_PER_CALL = 10_000
Resolved = tuple[str | None, bool]  # (topic or None, item unknown to the catalog)


class TopicCache:
    """Item -> Resolved, each entry until its deadline (time.monotonic), at most `max_items`
    entries: beyond, the least recently stored go first, expired or not.

    Why not cachetools' TTLCache: ingest looks up every event's item here, and a TTLCache
    lookup runs several Python calls (its timer, its order links), which made the cache the
    largest part of the event loop's work per ingested event (scripts/profile_ingest.py). A
    dict of (topic, unknown, deadline) read against one clock reading per batch is one
    lookup."""

    def __init__(self, max_items: int = MAX_CACHED_ITEMS) -> None:
        self.max_items = max_items
        # Ordered: evicting the oldest of a plain dict walks the slots its deletions left.
        self.entries: OrderedDict[str, tuple[str | None, bool, float]] = OrderedDict()

    def get(self, item_id: str, now: float) -> Resolved | None:
        entry = self.entries.get(item_id)
        if entry is None or entry[2] <= now:
            return None
        return entry[0], entry[1]

    def put(self, item_id: str, resolved: Resolved, deadline: float) -> None:
        entries = self.entries
        entries[item_id] = (*resolved, deadline)
        entries.move_to_end(item_id)  # stored again: the newest
        while len(entries) > self.max_items:
            entries.popitem(last=False)


class TopicResolver:
    """Item -> topic and topic -> label, from the EmbeddingService."""

    def __init__(
        self,
        embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
        topic_ttl_s: float = TOPIC_TTL_S,
    ) -> None:
        self.embedding = embedding
        self.topic_ttl_s = topic_ttl_s
        self.cache = TopicCache()
        self.labels: dict[str, str] = {}
        self.labels_fetched = 0.0

    async def resolve(self, item_ids: Iterable[str]) -> dict[str, Resolved]:
        """Resolved per item. When the EmbeddingService cannot answer, items come back as
        (None, False): stored now, topic unknown."""
        now = time.monotonic()
        entries = self.cache.entries  # read inline: ingest asks this for every event
        found: dict[str, Resolved] = {}
        missing: list[str] = []
        for item_id in set(item_ids):
            entry = entries.get(item_id)
            if entry is not None and entry[2] > now:
                found[item_id] = (entry[0], entry[1])
            else:
                missing.append(item_id)
                found[item_id] = (None, False)  # unless the catalog says otherwise below
        for start in range(0, len(missing), MAX_IDS_PER_CALL):
            chunk = missing[start : start + MAX_IDS_PER_CALL]
            try:
                response = await self.embedding.GetItemVectors(
                    embedding_pb2.GetItemVectorsRequest(item_ids=chunk)
                )
            except grpc.aio.AioRpcError as error:
                log.warning(
                    "topics of %d items unresolved: EmbeddingService %s",
                    len(chunk),
                    error.code().name,
                )
                continue
            stored = time.monotonic()
            for item in response.items:
                if item.status == embedding_pb2.VECTOR_STATUS_UNKNOWN_ITEM:
                    resolved: Resolved = (None, True)
                    deadline = stored + UNKNOWN_ITEM_RETRY_S
                else:
                    resolved = (item.topic_id or None, False)
                    deadline = stored + self.topic_ttl_s
                self.cache.put(item.item_id, resolved, deadline)
                found[item.item_id] = resolved
        return found

    async def label(self, topic_id: str) -> str:
        """The topic's name ("" when the EmbeddingService does not know it or cannot say)."""
        if topic_id not in self.labels and time.monotonic() - self.labels_fetched > 30:
            self.labels_fetched = time.monotonic()
            try:
                token = ""
                while True:
                    page = await self.embedding.ListTopics(
                        embedding_pb2.ListTopicsRequest(page_token=token)
                    )
                    self.labels.update({t.topic_id: t.label for t in page.topics})
                    token = page.next_page_token
                    if not token:
                        break
            except grpc.aio.AioRpcError as error:
                log.warning("topic labels unavailable: EmbeddingService %s", error.code().name)
        return self.labels.get(topic_id, "")
