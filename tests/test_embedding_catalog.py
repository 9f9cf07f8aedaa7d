"""The embedding service's in-memory catalog: rows, vectors and the change log it lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import sqlite_utils

from evorec.embedding.catalog import CatalogItem, CatalogStore, ItemCatalog


def item(item_id: str, value: float) -> CatalogItem:
    return CatalogItem(item_id, vector=np.full(4, value, dtype=np.float32))


def test_changes_are_listed_oldest_first_and_a_changed_item_moves_to_the_end() -> None:
    catalog = ItemCatalog(4, capacity=2)
    for i in range(5):
        catalog.put(item(f"i{i}", i))
    # (row, revision): every put takes the next revision.
    assert catalog.changed_after(0, 2) == [(0, 1), (1, 2)]
    assert catalog.changed_after(2, 10) == [(2, 3), (3, 4), (4, 5)]
    assert not catalog.put(item("i1", 9.0))
    assert catalog.changed_after(0, 10) == [(0, 1), (2, 3), (3, 4), (4, 5), (1, 6)]
    assert catalog.changed_after(5, 10) == [(1, 6)]
    assert catalog.put(item("new", 1.0))
    assert catalog.changed_after(5, 10) == [(1, 6), (5, 7)]
    assert catalog.changed_after(7, 10) == []
    assert catalog.vectors[1].tolist() == [9.0] * 4


def test_paging_through_changes_while_items_change_matches_a_full_sort() -> None:
    """Pages of changes, with puts between them, against the changes sorted from scratch."""
    rng = np.random.default_rng(0)
    catalog = ItemCatalog(4, capacity=8)
    revision_of: dict[int, int] = {}  # row -> the revision of its last put

    def put(item_id: str) -> None:
        catalog.put(item(item_id, -1.0))
        revision_of[catalog.rows[item_id]] = catalog.revision

    for i in range(300):
        put(f"i{i}")
    after, pages = 0, 0
    while True:
        page = catalog.changed_after(after, 25)
        expected = sorted((rev, row) for row, rev in revision_of.items() if rev > after)[:25]
        assert page == [(row, rev) for rev, row in expected]
        if not page:
            break
        after, pages = page[-1][1], pages + 1
        for _ in range(3 if pages < 10 else 0):  # changes and additions between pages
            put(f"i{int(rng.integers(0, 320))}")
    assert pages > 10
    assert len(catalog) > 300


def test_each_vector_is_held_once_also_after_the_catalog_grows() -> None:
    catalog = ItemCatalog(4, capacity=2)
    loaded = np.arange(12, dtype=np.float32).reshape(3, 4)  # as a dataset's vectors are read
    for i in range(3):  # the third grows the catalog
        catalog.put(CatalogItem(f"i{i}", vector=loaded[i]))
    catalog.put(CatalogItem("none"))
    for row, stored in enumerate(catalog.items[:3]):
        assert stored.vector is not None
        assert np.shares_memory(stored.vector, catalog.vectors)
        assert not np.shares_memory(stored.vector, loaded)
        assert stored.vector.tolist() == loaded[row].tolist()
    assert catalog.items[3].vector is None
    assert catalog.vectors[3].tolist() == [0.0] * 4


def test_stored_items_of_another_text_model_or_of_an_older_store_are_stale(
    tmp_path: Path,
) -> None:
    """A row is current only under the text model that computed it; a store written before
    rows named their text model gets the column, and its rows are stale once."""
    path = tmp_path / "catalog.sqlite"
    sqlite_utils.Database(path)["items"].insert(
        {
            "item_id": "old",
            "title": "t",
            "text": "words",
            "categories": json.dumps(["c"]),
            "topic_id": "t1",
            "vector": np.ones(4, dtype=np.float32).tobytes(),
            "create_time": 5.0,
            "update_time": 5.0,
        },
        pk="item_id",
    )
    store = CatalogStore(path)
    ((legacy, current),) = list(store.load(4, "model-a"))
    assert not current
    assert (legacy.item_id, legacy.categories, legacy.vector) == ("old", ["c"], None)

    store.save([item("old", 0.5), CatalogItem("none")], "model-a")
    store.close()
    store = CatalogStore(path)
    under_a = {i.item_id: (i, current) for i, current in store.load(4, "model-a")}
    assert {i: current for i, (_, current) in under_a.items()} == {"old": True, "none": True}
    vector = under_a["old"][0].vector
    assert vector is not None
    assert vector.tolist() == [0.5] * 4
    # Another text model of the same dimension: nothing is current, no vector is kept.
    under_b = list(store.load(4, "model-b"))
    assert [(i.item_id, i.vector, current) for i, current in under_b] == [
        ("old", None, False),
        ("none", None, False),
    ]
    store.close()
