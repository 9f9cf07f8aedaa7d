"""The ranking pieces on their own: MMR, filters and blending over a small item space, the
batcher, and publishing a version into TF Serving's base path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from evorec.encoder.backends import (
    Batcher,
    InProcessBackend,
    VersionUnloaded,
    is_expected_failure,
)
from evorec.encoder.batch_shapes import all_shapes, batch_shape, right_padded, row_buckets, widths
from evorec.encoder.bundle import ModelBundle, model_versions
from evorec.encoder.publish import publish, set_version_label
from evorec.ranking.catalog import MirroredItem
from evorec.ranking.item_space import ItemSpace
from evorec.ranking.recommender import (
    ENCODER,
    POPULARITY,
    RRF_K,
    Query,
    best,
    first_allowed,
    mmr,
    recent_items,
    recommend,
    topic_forecast,
)
from evorec.ranking.settings import RecommendSettings
from evorec.v1 import common_pb2


def test_first_allowed_reads_the_order_until_it_has_enough() -> None:
    order = np.array([5, 3, 8, 1, 9, 2, 7, 4, 6])
    allowed = np.zeros(10, dtype=bool)
    allowed[[2, 4, 6, 8]] = True
    assert first_allowed(order, allowed, 1).tolist() == [8]
    assert first_allowed(order, allowed, 3).tolist() == [8, 2, 4]
    assert first_allowed(order, allowed, 10).tolist() == [8, 2, 4, 6]
    assert first_allowed(order, np.zeros(10, dtype=bool), 3).tolist() == []


def test_unit_rows_are_the_table_rows_scaled_to_length_one(bundle: ModelBundle) -> None:
    space = ItemSpace(bundle, {})
    rows = space.unit_rows(np.array([0, 1, 2]))
    assert np.allclose(rows[0], 0.0)  # the padding row stays zero
    assert np.allclose(np.linalg.norm(rows[1:], axis=1), 1.0)
    assert np.allclose(rows[2] * np.linalg.norm(space.table[2]), space.table[2], atol=1e-6)


def test_mmr_without_diversity_is_relevance_order() -> None:
    vectors = np.eye(4)
    relevance = np.array([0.1, 0.9, 0.5, 0.7])
    assert mmr(relevance, vectors, k=3, diversity=0.0) == [1, 3, 2]


def test_mmr_skips_a_near_duplicate_of_what_it_picked() -> None:
    # Items 0 and 1 point the same way; 2 is orthogonal and a little less relevant.
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    relevance = np.array([1.0, 0.95, 0.8])
    assert mmr(relevance, vectors, k=2, diversity=0.0) == [0, 1]
    assert mmr(relevance, vectors, k=2, diversity=0.5) == [0, 2]


def test_best_keeps_allowed_items_in_score_order() -> None:
    scores = np.array([9.0, 1.0, 5.0, 3.0, 0.0])
    allowed = np.array([False, True, True, False, True])
    assert best(scores, allowed, 10).tolist() == [2, 1, 4]
    assert best(scores, allowed, 10, positive=True).tolist() == [2, 1]
    assert best(scores, allowed, 1).tolist() == [2]


def test_recent_items_are_distinct_newest_first() -> None:
    assert recent_items(np.array([1, 2, 3, 2, 4]), limit=3).tolist() == [4, 2, 3]


@pytest.fixture(scope="module")
def bundle(model_base: Path) -> ModelBundle:
    return ModelBundle.load(model_base / "encoder" / "1")


def test_the_bundle_holds_every_item_and_the_fallback_sources(bundle: ModelBundle) -> None:
    n = bundle.n_items
    assert bundle.item_table.shape[0] == n + 1
    assert bundle.text_vectors.shape[0] == n + 1
    assert bundle.text_projection is not None
    assert bundle.popularity.shape == (n + 1,)
    assert bundle.item_similarity.shape == bundle.markov.shape == (n + 1, n + 1)
    assert bundle.item_similarity.getnnz(axis=1).max() <= 50
    rows = np.asarray(bundle.markov.sum(axis=1)).ravel()
    assert np.all(rows < 1 + 1e-5)  # transition probabilities, pruned to the top 50


def test_the_catalog_renames_and_reclassifies_an_item_the_model_was_trained_on(
    bundle: ModelBundle,
) -> None:
    trained = bundle.item_ids[5]
    other_topic = next(t for t in bundle.topic_labels if t != bundle.topic_ids[5])
    upserted = MirroredItem(trained, "Renamed", other_topic, bundle.text_vectors[5])
    without_topic = MirroredItem(bundle.item_ids[6], "Untitled?", "", None)
    space = ItemSpace(bundle, {trained: upserted, without_topic.item_id: without_topic})
    assert (space.label(5), space.topic_of(5)) == ("Renamed", other_topic)
    assert (space.label(6), space.topic_of(6)) == ("Untitled?", bundle.topic_ids[6])
    # Not in the catalog: as trained.
    assert (space.titles[7], space.topic_of(7)) == (bundle.titles[7], bundle.topic_ids[7])
    assert len(space) == len(bundle.item_ids)  # no item added


def test_a_new_item_is_projected_into_encoder_space(bundle: ModelBundle) -> None:
    text = bundle.text_vectors[3]
    space = ItemSpace(bundle, {"fresh": MirroredItem("fresh", "Fresh", "t1", text)})
    fresh = space.index["fresh"]
    assert fresh == bundle.n_items + 1
    assert space.is_new(fresh)
    assert bundle.text_projection is not None
    np.testing.assert_allclose(space.table[fresh], text @ bundle.text_projection, rtol=1e-5)
    assert space.topic_of(fresh) == "t1"
    assert space.label(fresh) == "Fresh"


def test_an_empty_history_is_answered_by_popularity(bundle: ModelBundle) -> None:
    space = ItemSpace(bundle, {})
    query = Query(
        history=np.zeros(0, np.int64), event_types=np.zeros(0, np.int32), k=5, diversity=0
    )
    answer = recommend(space, query, None, RecommendSettings())
    assert answer.cold_start
    assert answer.sources_used == [POPULARITY]
    expected = np.argsort(-bundle.popularity[1:], kind="stable")[:5] + 1
    assert [r.index for r in answer.items] == expected.tolist()


def test_k_items_are_answered_when_k_is_above_what_each_source_proposes(
    bundle: ModelBundle,
) -> None:
    space = ItemSpace(bundle, {})
    few = RecommendSettings(candidates_per_source=10)
    popular = int((bundle.popularity[1:] > 0).sum())
    assert popular > 50
    for history in (np.zeros(0, np.int64), np.array([3, 9, 4], np.int64)):
        query = Query(
            history=history, event_types=np.ones(len(history), np.int32), k=50, diversity=0
        )
        answer = recommend(space, query, bundle.item_table[history].sum(axis=0), few)
        assert len({r.index for r in answer.items}) == 50


ENCODER_ONLY = RecommendSettings(
    weight_item_similarity=0, weight_markov=0, weight_text_neighbours=0, weight_popularity=0
)


def test_the_encoder_ranks_by_dot_product_and_leads_the_blend(bundle: ModelBundle) -> None:
    space = ItemSpace(bundle, {})
    history = np.array([1, 2, 3])
    # The longest item vector, as a user vector, scores its own item highest for certain
    # (a.b <= |a||b| <= |a|^2, equal only for a copy of a).
    norms = np.linalg.norm(space.table, axis=1)
    norms[[0, *history]] = 0
    target = int(np.argmax(norms))
    user = space.table[target]
    query = Query(history=history, event_types=np.ones(3, np.int32), k=10, diversity=0)
    alone = recommend(space, query, user, ENCODER_ONLY)
    scores = space.table @ user
    scores[[0, *history]] = -np.inf
    expected = np.argsort(-scores, kind="stable")[:10]
    assert [r.index for r in alone.items] == expected.tolist()
    assert alone.items[0].index == target
    assert alone.sources_used == [ENCODER]

    blended = recommend(space, query, user, RecommendSettings())
    assert ENCODER in blended.sources_used
    assert not {1, 2, 3} & {r.index for r in blended.items}
    assert blended.items[0].sources[0] == ENCODER


def test_an_encoder_item_is_explained_by_the_nearest_recent_item_and_the_last_action(
    bundle: ModelBundle,
) -> None:
    space = ItemSpace(bundle, {})
    # Item 2 was viewed, then rated: "rated" is what the user last did with it.
    history = np.array([1, 2, 3, 2])
    types = np.array(
        [common_pb2.EVENT_TYPE_PURCHASE, common_pb2.EVENT_TYPE_VIEW,
         common_pb2.EVENT_TYPE_CLICK, common_pb2.EVENT_TYPE_RATING],
        dtype=np.int32,
    )  # fmt: skip
    did = {1: "bought", 2: "rated", 3: "clicked"}
    query = Query(history=history, event_types=types, k=10, diversity=0)
    answer = recommend(space, query, space.table[2], ENCODER_ONLY)
    unit = space.table / np.linalg.norm(space.table, axis=1, keepdims=True).clip(1e-12)
    recent = [2, 3, 1]  # newest first
    for item in answer.items:
        anchor = recent[int(np.argmax(unit[recent] @ unit[item.index]))]
        assert item.reason == f"because you {did[anchor]} {space.label(anchor)}"
    assert any(item.reason.startswith("because you rated") for item in answer.items)


def test_the_forecast_term_lifts_the_forecast_topic_and_is_off_at_zero(
    bundle: ModelBundle,
) -> None:
    space = ItemSpace(bundle, {})
    topic = int(space.topic_codes[1])
    # A history all in one topic: the user's own chain forecasts that topic only.
    history = np.flatnonzero(space.topic_codes == topic)[:3]
    expected_mass = np.zeros(len(space.topics))
    expected_mass[topic] = 1.0
    np.testing.assert_allclose(topic_forecast(space, history), expected_mass)
    # The user vector of the longest item outside the topic: the encoder ranks it first.
    norms = np.linalg.norm(space.table, axis=1)
    norms[space.topic_codes == topic] = 0
    norms[0] = 0
    user = space.table[int(np.argmax(norms))]
    query = Query(history=history, event_types=np.ones(3, np.int32), k=10, diversity=0)
    scores = space.table @ user
    scores[[0, *history]] = -np.inf
    order = np.argsort(-scores, kind="stable")
    # Off: the encoder's dot-product order, the forecast topic not first.
    off = recommend(space, query, user, ENCODER_ONLY.model_copy(update={"weight_forecast": 0}))
    assert [r.index for r in off.items] == order[:10].tolist()
    assert space.topic_codes[off.items[0].index] != topic

    lifted = recommend(space, query, user, ENCODER_ONLY.model_copy(update={"weight_forecast": 5}))
    rank = int(np.flatnonzero(space.topic_codes[order] == topic)[0])
    first = lifted.items[0]
    assert first.index == int(order[rank])  # the encoder's best item of the forecast topic
    assert first.score == pytest.approx(1 / (RRF_K + rank + 1) + 5 / (RRF_K + 1))
    assert first.sources == [ENCODER]


def test_a_topic_filter_holds_against_the_encoders_choice(bundle: ModelBundle) -> None:
    space = ItemSpace(bundle, {})
    history = np.array([1, 2, 3])
    user = space.table[10]
    query = Query(history=history, event_types=np.ones(3, np.int32), k=10, diversity=0)
    first = recommend(space, query, user, ENCODER_ONLY).items[0].index
    topic = space.topic_of(first)
    filtered = recommend(
        space,
        Query(history=history, event_types=np.ones(3, np.int32), k=10, diversity=0,
              exclude_topics=[topic]),
        user,
        RecommendSettings(),
    )  # fmt: skip
    assert len(filtered.items) == 10
    assert topic not in {space.topic_of(r.index) for r in filtered.items}


def test_right_padding_keeps_lengths() -> None:
    batch, length = right_padded([np.array([4, 5]), np.array([7])])
    assert batch.tolist() == [[4, 5], [7, 0]]
    assert length.tolist() == [2, 1]
    # To a shape: rows beyond the histories hold one padding item.
    batch, length = right_padded([np.array([4, 5]), np.array([7])], (3, 4))
    assert batch.tolist() == [[4, 5, 0, 0], [7, 0, 0, 0], [0, 0, 0, 0]]
    assert length.tolist() == [2, 1, 1]


def test_batches_are_padded_to_a_few_shapes() -> None:
    assert row_buckets(64) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    assert row_buckets(10) == [1, 2, 3, 4, 6, 8, 10]
    assert widths(200) == [16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 200]
    assert batch_shape(5, 17, 64, 200) == (6, 32)
    assert batch_shape(33, 199, 64, 200) == (48, 200)
    assert batch_shape(1, 3, 64, None) == (1, 3)  # max_len not known: width as it is
    assert len(all_shapes(64, 200)) == 12 * 13
    assert {batch_shape(r, n, 64, 200) for r in range(1, 65) for n in range(1, 201)} == set(
        all_shapes(64, 200)
    )


async def test_padding_a_batch_to_its_shape_leaves_the_user_vectors_as_they_were(
    model_base: Path,
) -> None:
    version_dir = model_base / "encoder" / "1"
    backend = InProcessBackend(max_batch=8)
    await backend.load(version_dir)
    histories = [np.array([1, 2, 3]), np.array([5]), np.array([4, 4, 2, 7, 9])]
    plain, _ = await backend.user_vectors(*right_padded(histories), 1, None)
    shape = batch_shape(3, 5, 8, ModelBundle.load(version_dir).max_len)
    assert shape[0] == 3
    assert shape[1] > 5
    padded, _ = await backend.user_vectors(*right_padded(histories, shape), 1, None)
    assert padded.shape[0] == 3
    np.testing.assert_allclose(padded[:3], plain, atol=1e-5)
    shape = batch_shape(5, 5, 8, ModelBundle.load(version_dir).max_len)
    assert shape[0] == 6
    padded, _ = await backend.user_vectors(*right_padded(histories, shape), 1, None)
    np.testing.assert_allclose(padded[:3], plain, atol=1e-5)
    await backend.close()


async def test_a_version_unloaded_while_a_request_waited_is_an_expected_failure() -> None:
    """Replaced by a newer version during the request (with `serving.keep_versions` 0, or two
    versions published within a request): the request degrades, as with TF Serving's
    NOT_FOUND, instead of failing INTERNAL as a bug."""
    backend = InProcessBackend()
    with pytest.raises(VersionUnloaded) as raised:
        await backend.user_vectors(*right_padded([np.array([1, 2])]), 7, 1.0)
    assert is_expected_failure(raised.value)
    assert not is_expected_failure(KeyError(7))


async def test_the_batcher_gathers_concurrent_requests_into_one_call() -> None:
    calls: list[tuple[int, int]] = []

    async def run(
        history: np.ndarray, length: np.ndarray, version: int, limit: float | None
    ) -> tuple[np.ndarray, int]:
        calls.append(history.shape)
        await asyncio.sleep(0.01)
        return history[:, :1].astype(np.float32), version

    batcher = Batcher(run, max_batch=8, window_s=0.005)
    results = await asyncio.gather(
        *(batcher.user_vector(np.array([n + 1] * (n + 1)), 1, None, 24) for n in range(20))
    )
    await batcher.close()
    assert [float(vector[0]) for vector, _ in results] == [n + 1 for n in range(20)]
    assert max(rows for rows, _ in calls) == 8
    assert len(calls) <= 4
    # Each call in one of the few shapes: rows 1, 2, 3, 4, 6 or 8; width 16 or 24.
    assert {(rows in row_buckets(8), width in (16, 24)) for rows, width in calls} == {(True, True)}


async def test_a_batch_after_an_idle_while_gets_the_time_its_callers_have_left() -> None:
    limits: list[float | None] = []

    async def run(
        history: np.ndarray, length: np.ndarray, version: int, limit: float | None
    ) -> tuple[np.ndarray, int]:
        limits.append(limit)
        return history[:, :1].astype(np.float32), version

    batcher = Batcher(run, max_batch=8, window_s=0)
    await batcher.user_vector(np.array([1]), 1, 0.2, 24)
    await asyncio.sleep(0.5)  # idle: the worker waits for the next batch meanwhile
    await batcher.user_vector(np.array([2]), 1, 0.2, 24)
    await batcher.close()
    assert all(limit is not None and 0 < limit <= 0.2 for limit in limits), limits


async def test_the_batcher_fails_every_caller_of_a_failed_call() -> None:
    async def run(*args: object) -> tuple[np.ndarray, int]:
        raise ConnectionError("model down")

    batcher = Batcher(run, max_batch=4, window_s=0)
    outcomes = await asyncio.gather(
        *(batcher.user_vector(np.array([1]), 1, 1.0) for _ in range(3)), return_exceptions=True
    )
    await batcher.close()
    assert all(isinstance(o, ConnectionError) for o in outcomes)


def test_publishing_copies_a_version_and_sets_a_label(model_base: Path, tmp_path: Path) -> None:
    base = tmp_path / "serving" / "models"
    target = publish(model_base / "encoder" / "1", base)
    assert target == base / "encoder" / "1"
    assert model_versions(base / "encoder") == [1]
    with pytest.raises(FileExistsError):
        publish(model_base / "encoder" / "1", base)
    config_file = tmp_path / "serving" / "models.config"
    set_version_label(config_file, "encoder", "canary", 1)
    set_version_label(config_file, "encoder", "stable", 1)
    config = text_format.Parse(config_file.read_text(), model_server_config_pb2.ModelServerConfig())
    model = config.model_config_list.config[0]
    assert model.name == "encoder"
    assert model.base_path == "/models/encoder"
    assert dict(model.version_labels) == {"canary": 1, "stable": 1}
    assert list(model.model_version_policy.specific.versions) == [1]


def test_the_shipped_model_config_parses() -> None:
    root = Path(__file__).resolve().parent.parent
    config = text_format.Parse(
        (root / "serving" / "models.config").read_text(),
        model_server_config_pb2.ModelServerConfig(),
    )
    assert dict(config.model_config_list.config[0].version_labels) == {"stable": 1, "canary": 1}
