"""The interest service's topic cache: answers from memory, and notices a changed topic once
its entry expires."""

from __future__ import annotations

import asyncio
from typing import Any

from evorec.interest.topics import TopicCache, TopicResolver
from evorec.v1 import embedding_pb2


class Catalog:
    """Answers GetItemVectors as the EmbeddingService would, from a dict; counts calls."""

    def __init__(self, topics: dict[str, str]) -> None:
        self.topics = topics
        self.calls = 0

    async def GetItemVectors(self, request: Any) -> embedding_pb2.GetItemVectorsResponse:
        self.calls += 1
        return embedding_pb2.GetItemVectorsResponse(
            items=[
                embedding_pb2.ItemVector(item_id=i, topic_id=self.topics[i])
                if i in self.topics
                else embedding_pb2.ItemVector(
                    item_id=i, status=embedding_pb2.VECTOR_STATUS_UNKNOWN_ITEM
                )
                for i in request.item_ids
            ]
        )


async def test_cached_topics_expire_so_an_upsert_is_noticed() -> None:
    catalog = Catalog({"a": "t1"})
    resolver = TopicResolver(catalog, topic_ttl_s=0.2)  # type: ignore[arg-type]
    assert await resolver.resolve(["a", "new"]) == {"a": ("t1", False), "new": (None, True)}
    catalog.topics["a"] = "t2"
    assert await resolver.resolve(["a"]) == {"a": ("t1", False)}  # from the cache
    assert catalog.calls == 1
    await asyncio.sleep(0.3)
    assert await resolver.resolve(["a"]) == {"a": ("t2", False)}
    assert catalog.calls == 2


def test_the_topic_cache_is_bounded_the_least_recently_stored_going_first() -> None:
    cache = TopicCache(max_items=2)
    cache.put("a", ("t1", False), deadline=10.0)
    cache.put("b", (None, True), deadline=10.0)
    cache.put("a", ("t2", False), deadline=10.0)  # stored again: now the newest
    cache.put("c", ("t3", False), deadline=10.0)
    assert [cache.get(i, now=0.0) for i in "abc"] == [("t2", False), None, ("t3", False)]
    assert cache.get("a", now=10.0) is None  # expired at its deadline
    assert len(cache.entries) == 2
