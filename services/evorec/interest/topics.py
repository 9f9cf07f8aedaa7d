"""Which topic an item has, and what a topic is called: asked of the EmbeddingService and
cached, so that ingest does not wait on it for items already seen.

The cache is bounded and its entries expire: an item's topic is asked again after
TOPIC_TTL_S (an upsert may have changed it), an item the catalog did not know after
UNKNOWN_ITEM_RETRY_S (it may be upserted soon)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import cast

import grpc
from cachetools import TTLCache

from evorec.v1 import embedding_pb2, embedding_pb2_grpc

log = logging.getLogger("evorec.interest")
TOPIC_TTL_S = 600.0
UNKNOWN_ITEM_RETRY_S = 60.0
MAX_CACHED_ITEMS = 1_000_000
MAX_IDS_PER_CALL = 10_000
_MISSING = object()


class TopicResolver:
    """Item -> topic and topic -> label, from the EmbeddingService."""

    def __init__(
        self,
        embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
        topic_ttl_s: float = TOPIC_TTL_S,
    ) -> None:
        self.embedding = embedding
        # Items the catalog knows; None: it has no topic.
        self.topics: TTLCache[str, str | None] = TTLCache(MAX_CACHED_ITEMS, topic_ttl_s)
        self.unknown: TTLCache[str, bool] = TTLCache(MAX_CACHED_ITEMS, UNKNOWN_ITEM_RETRY_S)
        self.labels: dict[str, str] = {}
        self.labels_fetched = 0.0

    async def resolve(self, item_ids: Iterable[str]) -> dict[str, tuple[str | None, bool]]:
        """(topic or None, item unknown to the catalog) per item. When the EmbeddingService
        cannot answer, items come back as (None, False): stored now, topic unknown."""
        wanted = set(item_ids)
        missing = [i for i in wanted if i not in self.topics and i not in self.unknown]
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
            for item in response.items:
                if item.status == embedding_pb2.VECTOR_STATUS_UNKNOWN_ITEM:
                    self.unknown[item.item_id] = True
                else:
                    self.topics[item.item_id] = item.topic_id or None
                    self.unknown.pop(item.item_id, None)
        found: dict[str, tuple[str | None, bool]] = {}
        for item_id in wanted:
            topic = self.topics.get(item_id, _MISSING)
            if topic is _MISSING:
                found[item_id] = (None, item_id in self.unknown)
            else:
                found[item_id] = (cast(str | None, topic), False)
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
