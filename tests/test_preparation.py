"""`evorec data prepare`: the layout it writes, and its counts on the real datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evorec.data.artifacts import FORMAT_VERSION, DatasetLayout, sha256_of
from evorec.data.cleaning import clean
from evorec.data.readers import read_dataset
from evorec.data.synth import simulate
from evorec.preparation import PrepareOptions, prepare
from tests.conftest import SYNTH

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
ML100K = SHARED / "ml-100k"
MAGAZINES = SHARED / "amazon" / "Magazine_Subscriptions_5.json.gz"


def test_the_layout_and_manifest_are_complete(prepared: Path) -> None:
    layout = DatasetLayout(prepared)
    manifest = layout.read_manifest()
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["source"]["format"] == "generic"
    assert manifest["outputs"] == layout.output_hashes()
    assert manifest["outputs"]["events.parquet"] == sha256_of(layout.events)
    assert manifest["parameters"]["topics"] == 4
    events = pd.read_parquet(layout.events)
    items = pd.read_parquet(layout.items)
    assert manifest["counts"]["events"] == len(events)
    assert list(events["timestamp"]) == sorted(events["timestamp"])
    assert set(events["split_loo"]) == {"train", "valid", "test"}
    assert (events.groupby("user_index")["split_loo"].last() == "test").all()
    assert list(items["item_index"]) == list(range(1, len(items) + 1))
    vectors = np.load(layout.item_vectors)
    assert vectors.shape == (len(items) + 1, manifest["dimension"])
    assert not vectors[0].any()
    assert np.allclose(
        np.linalg.norm(vectors[items["item_index"][items["has_text_vector"]]], axis=1), 1
    )


def test_preparing_twice_gives_the_same_outputs(tmp_path: Path, prepared: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    source = json.loads((prepared / "manifest.json").read_text())
    out = tmp_path / "again"
    simulate(SYNTH).write(raw, SYNTH)
    prepare(read_dataset(raw), out, PrepareOptions(topics=SYNTH.topics))
    again = json.loads((out / "manifest.json").read_text())
    # Everything but the report, which names the (differently named) source folder.
    assert again["outputs"].pop("report.json") != source["outputs"].pop("report.json")
    assert again["outputs"] == source["outputs"]
    first, second = (json.loads((p / "report.json").read_text()) for p in (prepared, out))
    assert first.pop("dataset") != second.pop("dataset")
    assert first == second


def test_what_users_wrote_in_evaluation_events_reaches_no_item_or_word_vector(
    tmp_path: Path, synthetic_raw: Path
) -> None:
    """Items without catalog text are known by their reviews; the reviews of validation and
    test events (of any split) must not shape them, or the model would read the answer."""
    raw = read_dataset(synthetic_raw)
    raw.items["title"] = ""
    raw.items["text"] = ""
    first = tmp_path / "first"
    prepare(raw, first, PrepareOptions(topics=SYNTH.topics))
    prepared = pd.read_parquet(DatasetLayout(first).events)
    held = prepared[
        (prepared[["split_loo", "split_time", "split_new_item"]] != "train").any(axis=1)
        & (prepared["text"] != "")
    ]
    key = ["user_id", "item_id", "timestamp"]
    rewritten = raw.events.merge(held[key], on=key, how="left", indicator=True)["_merge"]
    rewritten_rows = (rewritten == "both").to_numpy()
    assert rewritten_rows.sum() == len(held) > 20
    raw.events.loc[rewritten_rows, "text"] = "answerword " * 12
    second = tmp_path / "second"
    prepare(raw, second, PrepareOptions(topics=SYNTH.topics))

    np.testing.assert_array_equal(
        np.load(DatasetLayout(second).item_vectors), np.load(DatasetLayout(first).item_vectors)
    )
    assert "answerword" not in json.loads(DatasetLayout(second).word_counts.read_text())
    assert DatasetLayout(second).word_vectors.read_bytes() == (
        DatasetLayout(first).word_vectors.read_bytes()
    )


@pytest.mark.skipif(not ML100K.exists(), reason="../shared/datasets/ml-100k is not here")
def test_ml100k_matches_its_published_statistics(tmp_path: Path) -> None:
    manifest = prepare(read_dataset(ML100K), tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["rows_in"], report["users"], report["items"], report["events_out"]) == (
        100_000, 943, 1_682, 100_000,
    )  # fmt: skip
    assert report["sequence_length"]["min"] == 20  # every user has at least 20 ratings
    assert report["density"] == pytest.approx(100_000 / (943 * 1682), abs=1e-6)
    assert manifest["counts"]["topics"] == 19  # the genres, "unknown" included
    assert manifest["splits"]["loo"] == {"train": 98_114, "valid": 943, "test": 943}


@pytest.mark.skipif(not MAGAZINES.exists(), reason="../shared/datasets/amazon is not here")
def test_amazon_duplicates_are_dropped_and_metadata_joined() -> None:
    data = clean(read_dataset(MAGAZINES))
    report = data.report
    assert report["rows_in"] == 2_375
    # The release's 44 duplicate rows, found as exact (same text and summary) or near
    # (same user, item and day, summary differing) duplicates.
    assert report["dropped"]["exact_duplicate"] + report["dropped"]["near_duplicate"] >= 44
    assert (report["users"], report["items"]) == (348, 157)
    # Metadata titles of this release are HTML fragments: none is kept as a title.
    assert not data.items["title"].str.contains("<").any()
    assert (data.items["text"] != "").mean() > 0.9
