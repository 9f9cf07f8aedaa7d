"""The vector index behind the real services: below the threshold SimilarItems and Recommend
answer exactly what they answered before the index (one product over every item), and with
the threshold set low the approximate index answers nearly the same (on catalogs this small
the IVF index has few lists and reads all of them: these tests check the services' path
through the index; its recall on a trained table is tested in test_benchmarks.py); the TF
Serving path uses the same index."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from evorec.data.artifacts import DatasetLayout
from evorec.encoder.bundle import ModelBundle
from evorec.platform.clients import embedding_client, ranking_client
from evorec.ranking import service
from evorec.ranking.item_space import ItemSpace
from evorec.ranking.recommender import Query, best, recommend
from evorec.ranking.settings import RecommendSettings
from evorec.v1 import common_pb2, embedding_pb2, ranking_pb2
from evorec.vector_index import recall_at
from tests.conftest import Stack
from tests.prediction_service import start_prediction_service

VIEW = common_pb2.EVENT_TYPE_VIEW


class EncoderSourceBefore:
    """The encoder source as it was before the vector index: best(table @ user, allowed, n)."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        assert allowed is not None
        rows = best(self.table @ query, allowed, k)
        return rows, (self.table @ query)[rows]


def similar_before(vectors: np.ndarray, has_vector: np.ndarray, row: int, k: int) -> list[int]:
    """SimilarItems of the item at `row` as the exact catalog search computed it."""
    scores = vectors @ vectors[row]
    scores[~has_vector] = -np.inf
    scores[row] = -np.inf
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.lexsort((top, -scores[top]))].tolist()


@pytest.fixture
async def services(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, prepared: Path, model_base: Path
) -> Stack:
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    monkeypatch.setenv("EVOREC_SERVING__BASE_PATH", str(model_base))
    for name in ("preprocess", "embedding", "interest"):
        await stack.start(name)
    return stack


def histories(prepared: Path, users: int = 12) -> list[list[str]]:
    events = pd.read_parquet(DatasetLayout(prepared).events, columns=["user_id", "item_id"])
    grouped = events.groupby("user_id", sort=True)["item_id"]
    return [list(items)[-20:] for _, items in list(grouped)[:users]]


async def similar_ids(stack: Stack, item_ids: list[str], k: int) -> list[list[str]]:
    async with embedding_client(stack.settings()) as embedding:
        answers = []
        for item_id in item_ids:
            response = await embedding.stub.SimilarItems(
                embedding_pb2.SimilarItemsRequest(item_id=item_id, k=k)
            )
            answers.append([i.item_id for i in response.items])
    return answers


async def test_similar_items_below_the_threshold_answer_as_before(
    services: Stack, prepared: Path
) -> None:
    items = pd.read_parquet(DatasetLayout(prepared).items).sort_values("item_index")
    vectors = np.load(DatasetLayout(prepared).item_vectors)[items["item_index"].to_numpy()]
    has_vector = items["has_text_vector"].to_numpy()
    ids = items["item_id"].astype(str).tolist()
    asked = [ids[row] for row in range(0, len(ids), 16) if has_vector[row]]
    answers = await similar_ids(services, asked, 10)
    for item_id, answer in zip(asked, answers, strict=True):
        row = ids.index(item_id)
        assert answer == [ids[r] for r in similar_before(vectors, has_vector, row, 10)]


async def test_similar_items_from_the_approximate_index_are_nearly_the_exact_ones(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, prepared: Path
) -> None:
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    await stack.start("preprocess")
    await stack.start("embedding")
    items = pd.read_parquet(DatasetLayout(prepared).items)
    asked = items["item_id"].astype(str).tolist()[::10]
    exact = await similar_ids(stack, asked, 10)
    await stack.stop("embedding")
    monkeypatch.setenv("EVOREC_INDEX__EXACT_BELOW", "1")
    await stack.start("embedding")
    approximate = await similar_ids(stack, asked, 10)
    recalls = [
        recall_at(np.array(e, dtype=object), np.array(a, dtype=object))
        for e, a in zip(exact, approximate, strict=True)
    ]
    assert np.mean(recalls) >= 0.95


async def answers(stack: Stack, users: list[list[str]]) -> list[ranking_pb2.RecommendResponse]:
    async with ranking_client(stack.settings()) as ranking:
        found = []
        for history in users:
            inline = ranking_pb2.InlineHistory(
                items=[ranking_pb2.HistoryItem(item_id=i, type=VIEW) for i in history]
            )
            found.append(
                await ranking.stub.Recommend(ranking_pb2.RecommendRequest(history=inline, k=10))
            )
    return found


def answers_before(model_base: Path, users: list[list[str]]) -> list[list[tuple[str, float]]]:
    """What Recommend computed before the index, for the same inline histories."""
    bundle = ModelBundle.load(model_base / "encoder" / "1")
    space = ItemSpace(bundle, {})
    space.encoder_index = EncoderSourceBefore(space.table)
    model = tf.saved_model.load(str(model_base / "encoder" / "1"))
    settings = RecommendSettings()
    expected = []
    for history in users:
        indexes = np.array([space.index[i] for i in history], dtype=np.int64)
        window = indexes[-bundle.max_len :].astype(np.int32)
        vector = np.asarray(
            model.signatures["serving_default"](
                history=tf.constant(window[None, :]), length=tf.constant([len(window)])
            )["user_vector"]
        )[0]
        query = Query(
            history=indexes,
            event_types=np.full(len(indexes), VIEW, dtype=np.int32),
            k=10,
            diversity=settings.diversity,
        )
        answer = recommend(space, query, vector, settings)
        expected.append([(space.ids[item.index], item.score) for item in answer.items])
    return expected


async def test_recommend_below_the_threshold_answers_as_before(
    services: Stack, prepared: Path, model_base: Path
) -> None:
    await services.start("ranking")
    users = histories(prepared)
    expected = answers_before(model_base, users)
    for response, before in zip(await answers(services, users), expected, strict=True):
        assert answered_by_encoder(response)
        got = [(r.item_id, r.score) for r in response.recommendations]
        assert [i for i, _ in got] == [i for i, _ in before]
        assert np.allclose([s for _, s in got], [s for _, s in before], rtol=1e-6)


def answered_by_encoder(response: ranking_pb2.RecommendResponse) -> bool:
    return ranking_pb2.CANDIDATE_SOURCE_ENCODER in response.sources_used and bool(
        response.model_version
    )


async def test_recommend_through_the_approximate_index_and_tf_serving(
    services: Stack, monkeypatch: pytest.MonkeyPatch, prepared: Path, model_base: Path
) -> None:
    """Above the threshold (set to 1 here) the encoder source comes from the approximate
    index; on a small catalog it finds what exact search finds, so the answers stay nearly
    the same, and the TF Serving path (the user vector from PredictionService) uses the same
    index."""
    users = histories(prepared)
    expected = answers_before(model_base, users)
    monkeypatch.setenv("EVOREC_INDEX__EXACT_BELOW", "1")
    stand_in = await start_prediction_service(model_base, port=0)
    try:
        monkeypatch.setenv("EVOREC_SERVING__BACKEND", "tf_serving")
        monkeypatch.setenv("EVOREC_SERVING__TF_SERVING_TARGET", f"127.0.0.1:{stand_in.port}")
        await services.start("ranking")
        overlaps = []
        for response, before in zip(await answers(services, users), expected, strict=True):
            assert answered_by_encoder(response)
            got = {r.item_id for r in response.recommendations}
            overlaps.append(len(got & {i for i, _ in before}) / len(before))
        assert np.mean(overlaps) >= 0.9
    finally:
        await stand_in.stop()


async def test_requests_at_the_limits_wait_for_a_slot_or_are_refused(
    services: Stack, monkeypatch: pytest.MonkeyPatch, prepared: Path
) -> None:
    """k = 1,000 answers (heavy requests take turns); with no room left to wait, a heavy
    request is answered RESOURCE_EXHAUSTED at once while small ones still answer."""
    await services.start("ranking")
    (history,) = histories(prepared, users=1)
    inline = ranking_pb2.InlineHistory(
        items=[ranking_pb2.HistoryItem(item_id=i, type=VIEW) for i in history]
    )
    async with ranking_client(services.settings()) as ranking:
        heavy = [
            ranking.stub.Recommend(ranking_pb2.RecommendRequest(history=inline, k=1_000))
            for _ in range(3)
        ]
        for response in await asyncio.gather(*heavy):
            assert len(response.recommendations) > 10
        monkeypatch.setattr(service, "HEAVY_WAITING", 0)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ranking.stub.Recommend(ranking_pb2.RecommendRequest(history=inline, k=1_000))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        small = await ranking.stub.Recommend(ranking_pb2.RecommendRequest(history=inline, k=10))
        assert len(small.recommendations) == 10
