"""The vector index: exact answers on small hand-made tables, the approximate indexes against
the exact one on synthetic vectors (IVF reading every list is exact), adding and replacing
rows without a rebuild, the choice by size and kind, and ranking's item space reusing its
index when the catalog grows. The recall of the default settings on a trained item table is
tested in tests/test_benchmarks.py (test_index_recall_on_a_trained_table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evorec.encoder.bundle import ModelBundle
from evorec.ranking.catalog import MirroredItem
from evorec.ranking.item_space import ItemSpace
from evorec.ranking.recommender import best
from evorec.vector_index import (
    ExactIndex,
    HnswIndex,
    IvfIndex,
    VectorIndex,
    build_index,
    extend_index,
    recall_at,
)
from evorec.vector_index_settings import IndexSettings

APPROXIMATE = IndexSettings(exact_below=1)


def clustered(rows: int, dimension: int = 16, seed: int = 0) -> np.ndarray:
    """Vectors around 50 random centres, as embeddings cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dimension))
    noise = 0.5 * rng.normal(size=(rows, dimension))
    return (centres[rng.integers(0, 50, rows)] + noise).astype(np.float32)


def test_exact_search_ranks_by_inner_product_with_ties_by_row() -> None:
    index = ExactIndex(np.array([[1, 0], [0, 1], [2, 0], [0.5, 1], [2, 0]], dtype=np.float32))
    rows, scores = index.search(np.array([1, 0], dtype=np.float32), 3)
    assert rows.tolist() == [2, 4, 0]  # 2 and 4 tie at 2.0: the lower row first
    assert scores.tolist() == [2.0, 2.0, 1.0]
    allowed = np.array([True, True, False, True, True])
    assert index.search(np.array([1, 0], np.float32), 2, allowed)[0].tolist() == [4, 0]
    # Rows past the end of the mask are not allowed; asking for more gives what there is.
    assert index.search(np.array([1, 0], np.float32), 10, allowed[:2])[0].tolist() == [0, 1]


def test_rows_tied_at_the_kth_score_are_taken_lowest_first() -> None:
    """Ties that straddle the k-th place: the lower rows get in, whatever the partial
    sort happened to pick (it picked rows 631 to 647 here before)."""
    table = np.ones((1_000, 2), dtype=np.float32)
    table[::7] = 0.5
    rows, scores = ExactIndex(table).search(np.array([1, 0], dtype=np.float32), 5)
    assert rows.tolist() == [1, 2, 3, 4, 5]
    assert scores.tolist() == [1.0] * 5
    rows, _ = ExactIndex(table).search(np.array([1, 0], np.float32), 3, np.arange(1_000) > 500)
    assert rows.tolist() == [501, 502, 503]


def test_exact_search_is_the_encoder_source_of_before() -> None:
    """The encoder source used to be best(table @ user, allowed, n): same rows, same order."""
    table = clustered(500)
    rng = np.random.default_rng(1)
    index = ExactIndex(table)
    for _ in range(20):
        user = rng.normal(size=16).astype(np.float32)
        allowed = rng.random(500) > 0.2
        allowed[0] = False
        expected = best(table @ user, allowed, 50)
        assert index.search(user, 50, allowed)[0].tolist() == expected.tolist()


def test_exact_search_is_the_text_neighbours_source_of_before() -> None:
    """The text neighbours source used to be best(text @ query, allowed, n, positive=True);
    it is now the index's top n with the non-positive scores dropped: the same rows, also
    when fewer than n allowed items score above zero."""
    text = clustered(500, seed=4)
    index = ExactIndex(text)
    rng = np.random.default_rng(2)
    short = 0
    for _ in range(20):
        query = rng.normal(size=16).astype(np.float32)
        allowed = rng.random(500) > 0.2
        allowed[0] = False
        for n in (50, 400):
            expected = best(text @ query, allowed, n, positive=True)
            found, scores = index.search(query, n, allowed)
            assert found[scores > 0].tolist() == expected.tolist()
            short += len(expected) < n
    assert short > 0  # the positive-only cut was exercised


def approximate(table: np.ndarray, kind: str, exact_below: int = 1) -> VectorIndex:
    settings = IndexSettings(exact_below=exact_below, approximate=kind)  # type: ignore[arg-type]
    return HnswIndex(table, settings) if kind == "hnsw" else IvfIndex(table, settings)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_the_approximate_index_finds_nearly_what_the_exact_one_does(kind: str) -> None:
    table = clustered(3_000)
    exact, index = ExactIndex(table), approximate(table, kind)
    rng = np.random.default_rng(2)
    recalls = []
    for _ in range(100):
        query = rng.normal(size=16).astype(np.float32)
        allowed = rng.random(3_000) > 0.05
        found, scores = index.search(query, 10, allowed)
        assert allowed[found].all()
        assert np.allclose(scores, table[found] @ query, atol=1e-4)
        assert (np.diff(scores) <= 1e-6).all()
        recalls.append(recall_at(exact.search(query, 10, allowed)[0], found))
    assert np.mean(recalls) >= 0.95


def test_ivf_reading_every_list_finds_the_exact_top_k() -> None:
    """With probes = lists the inverted lists hold every allowed live row once: the answer is
    the exact one, also after rows are added and replaced (the filter, the entry bookkeeping
    and the scores all checked, whatever the recall of fewer probes)."""
    table = clustered(4_000)
    settings = IndexSettings(exact_below=1, ivf_lists=64, ivf_probes=64, ivf_storage="float32")
    index, exact = IvfIndex(table, settings), ExactIndex(table)
    assert (index.lists, index.probes) == (64, 64)
    more = clustered(300, seed=5)
    moved = clustered(50, seed=6)
    rows = np.arange(0, 500, 10)
    later = clustered(40, seed=7)
    for target in (index, exact):
        target.add(more)
        target.replace(rows, moved)
        target.add(later)  # rows after a replacement: entries no longer follow rows
    rng = np.random.default_rng(3)
    for _ in range(30):
        query = rng.normal(size=16).astype(np.float32)
        allowed = rng.random(4_340) > 0.1
        for k in (10, 200):
            found, scores = index.search(query, k, allowed)
            expected, expected_scores = exact.search(query, k, allowed)
            assert found.tolist() == expected.tolist()
            assert np.allclose(scores, expected_scores, atol=1e-5)


def test_ivf_float16_lists_reading_every_list_find_the_exact_top_k_at_rounded_scores() -> None:
    table = clustered(4_000)
    settings = IndexSettings(exact_below=1, ivf_lists=64, ivf_probes=64, ivf_storage="float16")
    index, exact = IvfIndex(table, settings), ExactIndex(table)
    assert "IVF-float16, 64 of 64 lists" in index.description
    index.add(clustered(100, seed=5))
    exact.add(clustered(100, seed=5))
    rng = np.random.default_rng(3)
    for _ in range(20):
        query = rng.normal(size=16).astype(np.float32)
        allowed = rng.random(4_100) > 0.1
        found, scores = index.search(query, 10, allowed)
        expected, expected_scores = exact.search(query, 10, allowed)
        assert recall_at(expected, found) >= 0.9  # only near-ties may swap
        assert np.allclose(scores, expected_scores, rtol=1e-2, atol=1e-2)
        assert allowed[found].all()
    # A selective filter is scored from the same (rounded) storage.
    selective = IvfIndex(table, settings.model_copy(update={"exact_below": 500}))
    few = np.zeros(4_000, dtype=bool)
    few[:300] = True
    query = rng.normal(size=16).astype(np.float32)
    found, scores = selective.search(query, 10, few)
    expected, expected_scores = exact.search(query, 10, few)
    assert recall_at(expected, found) >= 0.9
    assert np.allclose(scores, expected_scores, rtol=1e-2, atol=1e-2)


def test_ivf_lists_shrink_with_a_small_table_and_keep_the_share_probed() -> None:
    index = IvfIndex(clustered(1_000), APPROXIMATE)
    # 1,000 rows hold 25 lists of at least MIN_ROWS_PER_LIST (39); 48/256 of 25 is 5, fewer
    # than MIN_PROBES (8).
    assert (index.lists, index.probes) == (25, 8)
    assert "8 of 25 lists" in index.description
    assert IvfIndex(clustered(120), APPROXIMATE).probes == 3  # every one of its 3 lists
    large = IvfIndex(clustered(20_000), APPROXIMATE)
    assert (large.lists, large.probes) == (256, 48)
    with pytest.raises(ValueError, match="ivf_probes"):
        IndexSettings(ivf_lists=8, ivf_probes=9)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_a_selective_filter_is_answered_exactly_over_the_allowed_rows(kind: str) -> None:
    table = clustered(3_000)
    index = approximate(table, kind, exact_below=100)
    index.replace(np.array([50]), np.full((1, 16), 3.0, dtype=np.float32))
    table[50] = 3.0
    allowed = np.zeros(3_000, dtype=bool)
    allowed[::50] = True  # 60 rows: fewer than exact_below
    query = np.ones(16, dtype=np.float32)
    expected = ExactIndex(table).search(query, 10, allowed)
    found = index.search(query, 10, allowed)
    assert found[0].tolist() == expected[0].tolist()
    assert found[0][0] == 50
    assert np.allclose(found[1], expected[1])


@pytest.mark.parametrize("kind", ["exact", "ivf", "hnsw"])
def test_rows_are_added_and_replaced_without_a_rebuild(kind: str) -> None:
    table = clustered(1_000)
    index = ExactIndex(table) if kind == "exact" else approximate(table, kind)
    if not isinstance(index, ExactIndex):
        graph = index._index
    far = np.zeros((2, 16), dtype=np.float32)
    far[0, 0], far[1, 1] = 100.0, 100.0
    index.add(far)
    assert len(index) == 1_002
    axis0 = np.eye(16, dtype=np.float32)[0]
    assert index.search(axis0, 1)[0].tolist() == [1_000]
    assert index.search(np.eye(16, dtype=np.float32)[1], 1)[0].tolist() == [1_001]
    # Row 7 moves far along the third axis; its old vector no longer finds it.
    old = table[7].copy()
    moved = np.zeros((1, 16), dtype=np.float32)
    moved[0, 2] = 100.0
    index.replace(np.array([7]), moved)
    rows, scores = index.search(np.eye(16, dtype=np.float32)[2], 1)
    assert (rows.tolist(), scores.tolist()) == ([7], [100.0])
    # Its old entry is dead: the old vector's neighbours hold row 7 at most once, scored
    # by the new vector.
    rows, scores = index.search(old, 50)
    assert rows.tolist().count(7) <= 1
    if 7 in rows.tolist():
        assert np.isclose(scores[rows.tolist().index(7)], old[2] * 100.0)
    assert rows.tolist()[0] != 7
    assert len(index) == 1_002
    if not isinstance(index, ExactIndex):
        assert index._index is graph
        assert graph.ntotal == 1_003  # 1,000 + 2 added + 1 replacement entry
        assert index.replaced == 1


def test_the_size_and_the_setting_choose_the_index() -> None:
    settings = IndexSettings(exact_below=100)
    assert isinstance(build_index(clustered(99), settings), ExactIndex)
    assert isinstance(build_index(clustered(100), settings), IvfIndex)
    graph = settings.model_copy(update={"approximate": "hnsw"})
    assert isinstance(build_index(clustered(100), graph), HnswIndex)


def test_extending_reuses_the_index_until_the_threshold() -> None:
    settings = IndexSettings(exact_below=1_050)
    table = clustered(1_000)
    first = build_index(table, settings)
    grown = np.vstack([table, clustered(20, seed=3)])
    grown[5] = 0.0
    second = extend_index(first, table, grown, settings)
    assert second is first
    assert len(second) == 1_020
    assert isinstance(second, ExactIndex)
    assert np.array_equal(second.vectors, grown)
    crossed = np.vstack([grown, clustered(40, seed=4)])
    third = extend_index(second, grown, crossed, settings)
    assert isinstance(third, IvfIndex)
    assert len(third) == 1_060
    # A table that lost rows, or another index's vectors, are built anew.
    assert extend_index(third, crossed, crossed[:-1], settings) is not third
    assert extend_index(third, table, crossed, settings) is not third


@pytest.fixture(scope="module")
def bundle(model_base: Path) -> ModelBundle:
    return ModelBundle.load(model_base / "encoder" / "1")


def test_a_new_catalog_item_extends_the_item_space_index(bundle: ModelBundle) -> None:
    space = ItemSpace(bundle, {})
    before, before_text = len(space.encoder_index), len(space.text_index)
    text = bundle.text_vectors[3]
    grown = ItemSpace(bundle, {"fresh": MirroredItem("fresh", "Fresh", "t1", text)}, space)
    assert grown.encoder_index is space.encoder_index
    assert len(grown.encoder_index) == before + 1
    row = grown.index["fresh"]
    only = np.arange(len(grown)) == row
    rows, scores = grown.encoder_index.search(grown.table[row], 1, only)
    assert rows.tolist() == [row]
    assert np.isclose(scores[0], grown.table[row] @ grown.table[row], rtol=1e-5)
    # The text index grows with it, holding the new item's text vector.
    assert grown.text_index is space.text_index
    assert len(grown.text_index) == before_text + 1
    rows, scores = grown.text_index.search(text, 1, only)
    assert rows.tolist() == [row]
    assert np.isclose(scores[0], text @ text, rtol=1e-5)
    # A changed text vector is replaced in place, not rebuilt.
    other = bundle.text_vectors[5]
    changed = ItemSpace(bundle, {"fresh": MirroredItem("fresh", "Fresh", "t1", other)}, grown)
    assert changed.text_index is grown.text_index
    assert len(changed.text_index) == before_text + 1
    rows, scores = changed.text_index.search(text, 1, only)
    assert rows.tolist() == [row]
    assert np.isclose(scores[0], other @ text, rtol=1e-5)
    # A catalog listed anew (fewer items, other order) builds its own.
    relisted = ItemSpace(bundle, {}, grown)
    assert relisted.encoder_index is not grown.encoder_index
    assert relisted.text_index is not grown.text_index


def test_an_item_space_without_new_items_shares_the_bundles_tables(bundle: ModelBundle) -> None:
    """No copy of the bundle's item tables (512 MiB at a million items) per catalog change
    while the catalog adds nothing, and none of them can be written through the space."""
    space = ItemSpace(bundle, {})
    assert np.shares_memory(space.table, bundle.item_table)
    assert np.shares_memory(space.text_vectors, bundle.text_vectors)
    text = bundle.text_vectors[3].copy()
    grown = ItemSpace(bundle, {"fresh": MirroredItem("fresh", "Fresh", "t1", text)}, space)
    assert not np.shares_memory(grown.table, bundle.item_table)
    assert np.array_equal(grown.text_vectors[:-1], bundle.text_vectors)
    assert np.array_equal(grown.text_vectors[-1], text)
    for table in (space.table, space.text_vectors, grown.table, space.popularity):
        with pytest.raises(ValueError, match="read-only"):
            table[1] = 0.0


def test_the_item_space_index_is_chosen_by_its_settings(bundle: ModelBundle) -> None:
    exact = ItemSpace(bundle, {})
    assert isinstance(exact.encoder_index, ExactIndex)
    assert isinstance(exact.text_index, ExactIndex)
    graph = ItemSpace(bundle, {}, index_settings=APPROXIMATE)
    assert isinstance(graph.encoder_index, IvfIndex)
    assert isinstance(graph.text_index, IvfIndex)
    allowed = np.ones(len(graph), dtype=bool)
    allowed[0] = False
    user = graph.table[1:].mean(axis=0)
    exact = best(graph.table @ user, allowed, 10)
    assert recall_at(exact, graph.encoder_index.search(user, 10, allowed)[0]) >= 0.9
