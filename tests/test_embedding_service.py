"""EmbeddingService over gRPC, with a real PreprocessService and a prepared dataset."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
import sqlite_utils

from evorec import vector_index
from evorec.data.artifacts import DatasetLayout
from evorec.data.readers import read_dataset
from evorec.data.synth import SyntheticDataset
from evorec.embedding.bundle import TextModel
from evorec.embedding.catalog import CatalogStore
from evorec.embedding.word_vectors import Word2VecOptions
from evorec.platform.errors import field_violations
from evorec.platform.registry import create_service
from evorec.platform.server import start_server
from evorec.preparation import PrepareOptions, prepare
from evorec.preprocess.service import PreprocessServicer
from evorec.v1 import embedding_pb2 as pb
from evorec.v1 import embedding_pb2_grpc, preprocess_pb2
from tests.conftest import SYNTH, Stack
from tests.support import channel


@pytest.fixture
async def embedding(
    stack: Stack, prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[embedding_pb2_grpc.EmbeddingServiceAsyncStub]:
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    await stack.start("preprocess")
    server = await stack.start("embedding")
    async with channel(server.port) as ch:
        yield embedding_pb2_grpc.EmbeddingServiceStub(ch)


def topic_text(synthetic: SyntheticDataset, topic: int, words: int = 8) -> str:
    return " ".join(synthetic.topic_words[topic][:words])


def items_by_topic(prepared: Path) -> pd.DataFrame:
    return pd.read_parquet(DatasetLayout(prepared).items)


async def test_texts_are_embedded_or_said_to_have_no_usable_words(
    embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
    synthetic: SyntheticDataset,
    prepared: Path,
) -> None:
    response = await embedding.EmbedTexts(
        pb.EmbedTextsRequest(texts=[topic_text(synthetic, 0), "zzzz qqqq", ""])
    )
    assert [e.status for e in response.embeddings] == [
        pb.VECTOR_STATUS_OK, pb.VECTOR_STATUS_NO_USABLE_TEXT, pb.VECTOR_STATUS_NO_USABLE_TEXT,
    ]  # fmt: skip
    assert [e.known_token_count for e in response.embeddings] == [8, 0, 0]
    assert len(response.embeddings[0].vector.values) == response.dimension == 64
    assert np.linalg.norm(response.embeddings[0].vector.values) == pytest.approx(1, abs=1e-5)
    manifest = DatasetLayout(prepared).read_manifest()
    digest = manifest["outputs"]["text/word_vectors.bin"][:12]
    assert response.model_version == f"{manifest['name']}@{digest}"


async def test_item_vectors_are_the_prepared_ones(
    embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub, prepared: Path
) -> None:
    items = items_by_topic(prepared)
    stored = np.load(DatasetLayout(prepared).item_vectors)
    first = items.iloc[0]
    response = await embedding.GetItemVectors(
        pb.GetItemVectorsRequest(item_ids=[first["item_id"], "nope"])
    )
    known, unknown = response.items
    assert known.status == pb.VECTOR_STATUS_OK
    assert known.topic_id == first["topic_id"]
    assert np.allclose(known.vector.values, stored[first["item_index"]])
    assert (unknown.item_id, unknown.status) == ("nope", pb.VECTOR_STATUS_UNKNOWN_ITEM)


async def test_an_upserted_item_gets_its_topic_is_found_and_survives_a_restart(
    stack: Stack,
    embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
    synthetic: SyntheticDataset,
    prepared: Path,
) -> None:
    items = items_by_topic(prepared)
    truth = dict(zip(synthetic.items["item_id"], synthetic.item_topics.tolist(), strict=True))
    new = pb.Item(item_id="fresh-1", title="Brand new", text=topic_text(synthetic, 2))
    response = await embedding.UpsertItems(pb.UpsertItemsRequest(items=[new]))
    assert (response.created_count, response.updated_count) == (1, 0)
    (stored,) = response.items
    members = items[items["topic_id"] == stored.topic_id]["item_id"]
    assert Counter(truth[i] for i in members).most_common(1)[0][0] == 2

    similar = await embedding.SimilarItems(
        pb.SimilarItemsRequest(text=topic_text(synthetic, 2), k=3)
    )
    assert "fresh-1" in [i.item_id for i in similar.items]

    await stack.stop("embedding")
    server = await stack.start("embedding")
    async with channel(server.port) as ch:
        again = await embedding_pb2_grpc.EmbeddingServiceStub(ch).GetItemVectors(
            pb.GetItemVectorsRequest(item_ids=["fresh-1"])
        )
        assert again.items[0].status == pb.VECTOR_STATUS_OK
        assert np.allclose(again.items[0].vector.values, stored.vector.values)
        update = await embedding_pb2_grpc.EmbeddingServiceStub(ch).UpsertItems(
            pb.UpsertItemsRequest(items=[pb.Item(item_id="fresh-1", text="")])
        )
        assert (update.created_count, update.updated_count) == (0, 1)
        assert update.items[0].status == pb.VECTOR_STATUS_NO_USABLE_TEXT


async def test_a_bad_upsert_stores_nothing(
    embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
) -> None:
    request = pb.UpsertItemsRequest(
        items=[
            pb.Item(item_id="a", text="x"),
            pb.Item(item_id="b"),
            pb.Item(item_id="a"),
            pb.Item(item_id=""),
        ]
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await embedding.UpsertItems(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [(v.field, v.description) for v in field_violations(raised.value)] == [
        ("items[2].item_id", "duplicate of items[0]"),
        ("items[3].item_id", "must be 1 to 128 characters"),
    ]
    response = await embedding.GetItemVectors(pb.GetItemVectorsRequest(item_ids=["a", "b"]))
    assert {i.status for i in response.items} == {pb.VECTOR_STATUS_UNKNOWN_ITEM}


async def test_similar_items_of_an_item_share_its_topic(
    embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub, synthetic: SyntheticDataset
) -> None:
    truth = dict(zip(synthetic.items["item_id"], synthetic.item_topics.tolist(), strict=True))
    response = await embedding.SimilarItems(
        pb.SimilarItemsRequest(item_id="i0", k=10, exclude_item_ids=["i1"])
    )
    found = [i.item_id for i in response.items]
    assert len(found) == 10
    assert "i0" not in found
    assert "i1" not in found
    assert [i.score for i in response.items] == sorted(
        (i.score for i in response.items), reverse=True
    )
    assert sum(truth[i] == truth["i0"] for i in found) >= 9


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (pb.SimilarItemsRequest(item_id="missing"), grpc.StatusCode.NOT_FOUND, None),
        (pb.SimilarItemsRequest(), grpc.StatusCode.INVALID_ARGUMENT, "query"),
        (pb.SimilarItemsRequest(item_id="i0", k=1001), grpc.StatusCode.INVALID_ARGUMENT, "k"),
        (pb.SimilarItemsRequest(text="qqqq zzzz"), grpc.StatusCode.INVALID_ARGUMENT, "text"),
        (
            pb.GetItemVectorsRequest(item_ids=["x"] * 10_001),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "item_ids",
        ),
        (
            pb.EmbedTextsRequest(texts=["a" * 100_001]),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "texts[0]",
        ),
    ],
)
async def test_bad_queries_get_the_right_status(
    embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
    request_: object,
    code: grpc.StatusCode,
    field: str | None,
) -> None:
    method = {
        pb.SimilarItemsRequest: embedding.SimilarItems,
        pb.GetItemVectorsRequest: embedding.GetItemVectors,
        pb.EmbedTextsRequest: embedding.EmbedTexts,
    }[type(request_)]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await method(request_)  # type: ignore[operator]
    assert raised.value.code() == code
    assert [v.field for v in field_violations(raised.value)] == ([field] if field else [])


async def test_without_the_preprocess_service_text_calls_are_unavailable(
    stack: Stack, embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub
) -> None:
    await stack.stop("preprocess")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await embedding.EmbedTexts(pb.EmbedTextsRequest(texts=["anything"]))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert raised.value.details().startswith("PreprocessService: UNAVAILABLE")
    # What needs no text still works.
    response = await embedding.GetItemVectors(pb.GetItemVectorsRequest(item_ids=["i0"]))
    assert response.items[0].status == pb.VECTOR_STATUS_OK


async def test_without_a_prepared_dataset_the_service_does_not_start(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVOREC_DATASET", str(tmp_path / "none"))
    with pytest.raises(
        FileNotFoundError, match=r"no prepared dataset at .*none: run `evorec data prepare`"
    ):
        await stack.start("embedding")


async def test_topics_are_listed_largest_first_page_by_page(
    embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub, prepared: Path
) -> None:
    everything = await embedding.ListTopics(pb.ListTopicsRequest())
    assert everything.source == "clusters"
    assert [t.topic_id for t in everything.topics] == ["t0", "t1", "t2", "t3"]
    sizes = items_by_topic(prepared)["topic_id"].value_counts()
    assert [t.item_count for t in everything.topics] == [
        sizes[t.topic_id] for t in everything.topics
    ]
    assert all(t.label == " / ".join(t.top_words[:3]) for t in everything.topics)
    first = await embedding.ListTopics(pb.ListTopicsRequest(page_size=3))
    second = await embedding.ListTopics(
        pb.ListTopicsRequest(page_size=3, page_token=first.next_page_token)
    )
    assert [t.topic_id for t in [*first.topics, *second.topics]] == ["t0", "t1", "t2", "t3"]
    assert second.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await embedding.ListTopics(pb.ListTopicsRequest(page_token="forged"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_catalog_changes_are_listed_in_order_and_a_restart_is_detected(
    embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
    prepared: Path,
    synthetic: SyntheticDataset,
    stack: Stack,
) -> None:
    items = items_by_topic(prepared)
    pages = [await embedding.ListItems(pb.ListItemsRequest(page_size=100))]
    while pages[-1].has_more:
        pages.append(
            await embedding.ListItems(
                pb.ListItemsRequest(
                    page_size=100,
                    after_revision=pages[-1].revision,
                    catalog_id=pages[-1].catalog_id,
                )
            )
        )
    listed = [entry for page in pages for entry in page.items]
    assert [e.item.item_id for e in listed] == items["item_id"].tolist()
    assert [e.revision for e in listed] == list(range(1, len(items) + 1))
    assert listed[0].vector.status == pb.VECTOR_STATUS_OK
    assert len(listed[0].vector.vector.values) == pages[0].dimension
    assert not listed[0].item.text  # left out of listings

    assert not listed[0].item.HasField("create_time")  # a dataset's item: no time of its own

    late = pb.Item(item_id="late", text=topic_text(synthetic, 1), create_time={"seconds": 1_700})
    await embedding.UpsertItems(pb.UpsertItemsRequest(items=[late]))
    changes = await embedding.ListItems(
        pb.ListItemsRequest(after_revision=pages[-1].revision, catalog_id=pages[-1].catalog_id)
    )
    assert [e.item.item_id for e in changes.items] == ["late"]
    assert changes.items[0].item.create_time.seconds == 1_700
    assert not changes.has_more
    assert changes.revision == pages[-1].revision + 1
    with_text = await embedding.ListItems(
        pb.ListItemsRequest(after_revision=pages[-1].revision, include_text=True)
    )
    assert with_text.items[0].item.text == topic_text(synthetic, 1)

    await stack.stop("embedding")
    server = await stack.start("embedding")
    async with channel(server.port) as ch:
        restarted = embedding_pb2_grpc.EmbeddingServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await restarted.ListItems(
                pb.ListItemsRequest(after_revision=changes.revision, catalog_id=changes.catalog_id)
            )
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        again = await restarted.ListItems(pb.ListItemsRequest(page_size=1000))
        assert "late" in {e.item.item_id for e in again.items}
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await restarted.ListItems(pb.ListItemsRequest(page_size=1001))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def reseeded(tmp_path_factory: pytest.TempPathFactory, synthetic_raw: Path) -> Path:
    """The small simulated dataset prepared with word vectors of another seed: the same
    dimension, another text model."""
    out = tmp_path_factory.mktemp("reseeded")
    options = PrepareOptions(topics=SYNTH.topics, word2vec=Word2VecOptions(seed=7))
    prepare(read_dataset(synthetic_raw), out, options)
    return out


def store_path(stack: Stack) -> Path:
    return stack.settings().data_dir / "embedding" / "catalog.sqlite"


def store_legacy_items(path: Path, documents: Sequence[tuple[str, str, str]]) -> None:
    """(item_id, title, text) rows as a store of an older evorec kept them: no text model
    column, and vectors of another dimension (3), so every one is to be embedded again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "item_id": item_id,
            "title": title,
            "text": text,
            "categories": "[]",
            "topic_id": "",
            "vector": np.ones(3, dtype=np.float32).tobytes(),
            "create_time": 1.0,
            "update_time": 1.0,
        }
        for item_id, title, text in documents
    ]
    sqlite_utils.Database(path)["items"].insert_all(rows, pk="item_id")


async def embed(stub: embedding_pb2_grpc.EmbeddingServiceAsyncStub, text: str) -> list[float]:
    (embedded,) = (await stub.EmbedTexts(pb.EmbedTextsRequest(texts=[text]))).embeddings
    assert embedded.status == pb.VECTOR_STATUS_OK
    return list(embedded.vector.values)


async def test_an_item_whose_document_is_longer_than_one_text_may_be_is_upserted(
    embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub, synthetic: SyntheticDataset
) -> None:
    """Title, text and categories each within their limits join into a document longer than
    the PreprocessService takes: it is cut to that length, not refused."""
    text = (topic_text(synthetic, 3) + " ") * 2_000
    text = text[:100_000]
    item = pb.Item(
        item_id="long",
        title="A title",
        text=text,
        categories=[f"c{i:03d}" + "y" * 196 for i in range(64)],
    )
    response = await embedding.UpsertItems(pb.UpsertItemsRequest(items=[item]))
    assert response.items[0].status == pb.VECTOR_STATUS_OK
    assert np.allclose(response.items[0].vector.values, await embed(embedding, text), atol=1e-4)


async def test_more_stale_items_than_one_normalize_call_takes_are_embedded_again_at_start(
    stack: Stack, prepared: Path, synthetic: SyntheticDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,001 stored items of an older store: more texts than one NormalizeText takes."""
    documents = [(f"s{i}", "", topic_text(synthetic, i % 4)) for i in range(1_001)]
    store_legacy_items(store_path(stack), documents)
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    await stack.start("preprocess")
    server = await stack.start("embedding")
    async with channel(server.port) as ch:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
        response = await stub.GetItemVectors(
            pb.GetItemVectorsRequest(item_ids=[item_id for item_id, _, _ in documents])
        )
        assert {i.status for i in response.items} == {pb.VECTOR_STATUS_OK}
        for topic in range(4):
            assert np.allclose(
                response.items[topic].vector.values,
                await embed(stub, topic_text(synthetic, topic)),
                atol=1e-5,
            )


async def test_stale_items_are_embedded_again_in_calls_within_the_message_limit(
    stack: Stack, prepared: Path, synthetic: SyntheticDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored texts of more bytes together than a gRPC message may carry are sent to the
    PreprocessService in several calls."""
    monkeypatch.setenv("EVOREC_SERVER__MAX_RECEIVE_MESSAGE_BYTES", str(256 * 1024))
    monkeypatch.setenv("EVOREC_SERVER__MAX_SEND_MESSAGE_BYTES", str(256 * 1024))
    long_text = ((topic_text(synthetic, 1) + " ") * 2_000)[:60_000]
    store_legacy_items(store_path(stack), [(f"l{i}", "", long_text) for i in range(10)])
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    await stack.start("preprocess")
    server = await stack.start("embedding")
    async with channel(server.port) as ch:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
        response = await stub.GetItemVectors(
            pb.GetItemVectorsRequest(item_ids=[f"l{i}" for i in range(10)])
        )
        assert {i.status for i in response.items} == {pb.VECTOR_STATUS_OK}
        assert np.allclose(response.items[9].vector.values, await embed(stub, long_text))


async def test_items_stored_under_another_text_model_of_the_same_dimension_are_embedded_again(
    stack: Stack,
    prepared: Path,
    reseeded: Path,
    synthetic: SyntheticDataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = topic_text(synthetic, 0)
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    await stack.start("preprocess")
    server = await stack.start("embedding")
    async with channel(server.port) as ch:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
        await stub.UpsertItems(
            pb.UpsertItemsRequest(items=[pb.Item(item_id="x", text=document, categories=["c"])])
        )
        before = await embed(stub, document)
    await stack.stop("embedding")

    monkeypatch.setenv("EVOREC_DATASET", str(reseeded))
    server = await stack.start("embedding")
    async with channel(server.port) as ch:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
        now = await embed(stub, document)
        assert len(now) == len(before)
        assert not np.allclose(now, before, atol=1e-3)  # the text models differ
        (stored,) = (await stub.GetItemVectors(pb.GetItemVectorsRequest(item_ids=["x"]))).items
        assert np.allclose(stored.vector.values, now, atol=1e-5)
        (same,) = (
            await stub.UpsertItems(
                pb.UpsertItemsRequest(items=[pb.Item(item_id="y", text=document, categories=["c"])])
            )
        ).items
        assert stored.topic_id == same.topic_id
    # Embedded again once: the row now names this text model.
    fingerprint = TextModel.load(DatasetLayout(reseeded)).fingerprint
    store = CatalogStore(store_path(stack))
    try:
        assert [(i.item_id, current) for i, current in store.load(len(now), fingerprint)] == [
            ("x", True),
            ("y", True),
        ]
    finally:
        store.close()


async def test_an_upsert_whose_caller_gives_up_while_it_is_saved_is_still_served(
    stack: Stack,
    embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
    synthetic: SyntheticDataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Saved means served: a deadline passing during the save does not stop the item from
    reaching the catalog, and the next upsert waits for it."""
    real_save = CatalogStore.save
    saves = 0

    def slow_save(self: CatalogStore, *args: Any) -> None:
        nonlocal saves
        saves += 1
        if saves == 1:
            time.sleep(1.0)  # a slow disk
        real_save(self, *args)

    monkeypatch.setattr(CatalogStore, "save", slow_save)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await embedding.UpsertItems(
            pb.UpsertItemsRequest(items=[pb.Item(item_id="late", text=topic_text(synthetic, 0))]),
            timeout=0.3,
        )
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await embedding.UpsertItems(
        pb.UpsertItemsRequest(items=[pb.Item(item_id="next", text=topic_text(synthetic, 1))])
    )
    response = await embedding.GetItemVectors(pb.GetItemVectorsRequest(item_ids=["late", "next"]))
    assert [i.status for i in response.items] == [pb.VECTOR_STATUS_OK] * 2
    listed = await embedding.ListItems(pb.ListItemsRequest(page_size=1000))
    assert {"late", "next"} <= {e.item.item_id for e in listed.items}


async def test_a_cancelled_upsert_does_not_mix_its_index_rows_with_the_next_ones(
    embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
    synthetic: SyntheticDataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first upsert's caller gives up while its index update waits for a worker thread;
    the second upsert's rows must not take the first's place in the index."""
    real_add = vector_index.ExactIndex.add
    adds = 0

    def slow_add(self: vector_index.ExactIndex, vectors: np.ndarray) -> None:
        nonlocal adds
        adds += 1
        if adds == 1:
            time.sleep(1.0)
        real_add(self, vectors)

    monkeypatch.setattr(vector_index.ExactIndex, "add", slow_add)
    first, second = topic_text(synthetic, 0), topic_text(synthetic, 2)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await embedding.UpsertItems(
            pb.UpsertItemsRequest(items=[pb.Item(item_id="A", text=first)]), timeout=0.3
        )
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await embedding.UpsertItems(pb.UpsertItemsRequest(items=[pb.Item(item_id="B", text=second)]))
    for text, item_id in ((first, "A"), (second, "B")):
        similar = await embedding.SimilarItems(pb.SimilarItemsRequest(text=text, k=1))
        assert [(i.item_id, round(i.score, 4)) for i in similar.items] == [(item_id, 1.0)]


async def test_no_upsert_is_accepted_before_stale_stored_items_are_embedded_again(
    stack: Stack, prepared: Path, synthetic: SyntheticDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upsert during start-up would be overwritten by the re-embedding of the stored
    item: until that is done, the service answers UNAVAILABLE (it is loading)."""
    old, new = topic_text(synthetic, 0), topic_text(synthetic, 2)
    store_legacy_items(store_path(stack), [("x", "old", old)])
    real_normalize = PreprocessServicer.NormalizeText

    async def slow_normalize(
        self: PreprocessServicer, request: preprocess_pb2.NormalizeTextRequest, context: Any
    ) -> preprocess_pb2.NormalizeTextResponse:
        if f"old {old}" in request.texts:
            await asyncio.sleep(1.0)  # many stale items take a while
        return await real_normalize(self, request, context)

    monkeypatch.setattr(PreprocessServicer, "NormalizeText", slow_normalize)
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    await stack.start("preprocess")
    settings = stack.settings()
    running = await start_server(
        create_service("embedding", settings), settings.endpoint("embedding"), settings.server
    )
    try:
        async with channel(running.port) as ch:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
            refused: set[grpc.StatusCode] = set()
            upsert = pb.UpsertItemsRequest(items=[pb.Item(item_id="x", title="new", text=new)])
            for _ in range(250):
                try:
                    await stub.UpsertItems(upsert)
                    break
                except grpc.aio.AioRpcError as error:
                    refused.add(error.code())
                    await asyncio.sleep(0.02)
            assert refused == {grpc.StatusCode.UNAVAILABLE}
            await running.ready()
            listed = await stub.ListItems(pb.ListItemsRequest(page_size=1000))
            (item,) = [e for e in listed.items if e.item.item_id == "x"]
            assert item.item.title == "new"
            assert np.allclose(item.vector.vector.values, await embed(stub, f"new {new}"))
    finally:
        await running.shutdown()


async def test_a_dataset_prepared_without_text_is_served_with_no_vectors(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_preparation import prepare_textless

    monkeypatch.setenv("EVOREC_DATASET", str(prepare_textless(tmp_path)))
    await stack.start("preprocess")
    server = await stack.start("embedding")
    async with channel(server.port) as ch:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
        response = await stub.EmbedTexts(pb.EmbedTextsRequest(texts=["red shoes"]))
        assert [e.status for e in response.embeddings] == [pb.VECTOR_STATUS_NO_USABLE_TEXT]
        items = await stub.GetItemVectors(pb.GetItemVectorsRequest(item_ids=["i1"]))
        assert [i.status for i in items.items] == [pb.VECTOR_STATUS_NO_USABLE_TEXT]
