"""Which topic an item has, and what a topic is called: asked of the EmbeddingService and
cached, so that ingest does not wait on it for items already seen."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import grpc

from evorec.v1 import embedding_pb2, embedding_pb2_grpc

log = logging.getLogger("evorec.interest")
UNKNOWN_ITEM_RETRY_S = 60.0  # an unknown item may be upserted soon: ask again after this
MAX_CACHED_ITEMS = 1_000_000
MAX_IDS_PER_CALL = 10_000


class TopicResolver:
    """Item -> topic and topic -> label, from the EmbeddingService."""

    def __init__(self, embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub) -> None:
        self.embedding = embedding
        self.topics: dict[str, str | None] = {}  # known items; None: no topic
        self.unknown_until: dict[str, float] = {}
        self.labels: dict[str, str] = {}
        self.labels_fetched = 0.0

    async def resolve(self, item_ids: Iterable[str]) -> dict[str, tuple[str | None, bool]]:
        """(topic or None, item unknown to the catalog) per item. When the EmbeddingService
        cannot answer, items come back as (None, False): stored now, topic unknown."""
        now = time.monotonic()
        wanted = set(item_ids)
        missing = [
            i for i in wanted if i not in self.topics and self.unknown_until.get(i, 0.0) <= now
        ]
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
            if len(self.topics) > MAX_CACHED_ITEMS:
                self.topics.clear()
            for item in response.items:
                if item.status == embedding_pb2.VECTOR_STATUS_UNKNOWN_ITEM:
                    self.unknown_until[item.item_id] = now + UNKNOWN_ITEM_RETRY_S
                else:
                    self.topics[item.item_id] = item.topic_id or None
                    self.unknown_until.pop(item.item_id, None)
        return {
            i: (self.topics[i], False) if i in self.topics else (None, i in self.unknown_until)
            for i in wanted
        }

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
