"""`evorec data prepare`: the layout it writes, and its counts on the real datasets."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evorec.data.artifacts import FORMAT_VERSION, DatasetLayout, sha256_of
from evorec.data.cleaning import clean
from evorec.data.readers import read_dataset
from evorec.data.schema import RawDataset
from evorec.data.splits import leave_one_out
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


def _prepared_with_rewritten_reviews(
    raw: RawDataset, prepared: pd.DataFrame, rewrite: pd.Series, out: Path
) -> DatasetLayout:
    """`raw` prepared into `out` with the review of each prepared event in `rewrite` replaced."""
    events = raw.events.copy()
    key = ["user_id", "item_id", "timestamp"]
    chosen = prepared[rewrite & (prepared["text"] != "")]
    merged = events.merge(chosen[key], on=key, how="left", indicator=True)["_merge"]
    rows = (merged == "both").to_numpy()
    assert rows.sum() == len(chosen) > 5
    events.loc[rows, "text"] = "answerword " * 12
    prepare(replace(raw, events=events), out, PrepareOptions(topics=SYNTH.topics))
    return DatasetLayout(out)


def test_what_users_wrote_in_evaluation_events_reaches_no_item_or_word_vector(
    tmp_path: Path, synthetic_raw: Path
) -> None:
    """Items without catalog text are known by their reviews; the reviews of a split's
    validation and test events must not shape the item vectors its models read, or they would
    read the answer. Leave-one-out's vectors read the reviews of its training events; the
    vectors of the other protocols, and the word vectors, only those that train every split."""
    raw = read_dataset(synthetic_raw)
    raw.items["title"] = ""
    raw.items["text"] = ""
    # Every event has a review, as on Amazon.
    silent = raw.events["text"] == ""
    raw.events.loc[silent, "text"] = "a few words on " + raw.events.loc[silent, "item_id"]
    first = DatasetLayout(tmp_path / "first")
    prepare(raw, first.root, PrepareOptions(topics=SYNTH.topics))
    prepared = pd.read_parquet(first.events)
    loo_held_out = prepared["split_loo"] != "train"
    held_out = (prepared[["split_loo", "split_time", "split_new_item"]] != "train").any(axis=1)
    # The cold-start and evolution protocols validate on a leave-one-out of their own
    # training events.
    for split in ("split_time", "split_new_item"):
        own = prepared[prepared[split] == "train"]
        held_out.loc[own.index] = held_out.loc[own.index] | (leave_one_out(own) != "train")
    only_loo_trains = ~loo_held_out & held_out

    def unchanged(layout: DatasetLayout, *vectors: str) -> None:
        for name in vectors:
            np.testing.assert_array_equal(
                np.load(getattr(layout, name)), np.load(getattr(first, name))
            )
        assert "answerword" not in json.loads(layout.word_counts.read_text())
        assert layout.word_vectors.read_bytes() == first.word_vectors.read_bytes()
        pd.testing.assert_series_equal(
            pd.read_parquet(layout.items)["topic_id_every_split"],
            pd.read_parquet(first.items)["topic_id_every_split"],
        )

    loo_answers = _prepared_with_rewritten_reviews(raw, prepared, loo_held_out, tmp_path / "loo")
    unchanged(loo_answers, "item_vectors", "every_split_item_vectors")

    other_answers = _prepared_with_rewritten_reviews(
        raw, prepared, only_loo_trains, tmp_path / "other"
    )
    unchanged(other_answers, "every_split_item_vectors")
    described = prepared.loc[only_loo_trains & (prepared["text"] != ""), "item_index"].unique()
    changed = (
        np.load(other_answers.item_vectors)[described] != np.load(first.item_vectors)[described]
    )
    assert changed.any(axis=1).all()  # leave-one-out reads them: every item they describe moved


def test_serving_gives_an_item_known_only_by_late_reviews_the_topic_of_its_text(
    tmp_path: Path, synthetic_raw: Path
) -> None:
    """The protocols' topics come from the text that trains every split, which says nothing
    of an item reviewed only after the time cut or held out as new; serving still gives it the
    topic nearest its text, as the embedding service does for an upserted item."""
    raw = read_dataset(synthetic_raw)
    raw.items["title"] = ""
    raw.items["text"] = ""
    raw.events["text"] = "a few words on " + raw.events["item_id"]
    layout = DatasetLayout(tmp_path / "prepared")
    prepare(raw, layout.root, PrepareOptions(topics=SYNTH.topics))
    items = pd.read_parquet(layout.items)
    rows = items["item_index"].to_numpy()
    vectors = np.load(layout.item_vectors)[rows]
    late_only = items["has_text_vector"].to_numpy() & ~(
        np.load(layout.every_split_item_vectors)[rows].any(axis=1)
    )
    assert late_only.sum() >= 10  # the new-item split's items, at least
    assert (items.loc[late_only, "topic_id_every_split"] == "").all()
    topic_ids = [t["topic_id"] for t in json.loads(layout.topics.read_text())["topics"]]
    nearest = (vectors[late_only] @ np.load(layout.topic_centroids).T).argmax(axis=1)
    assert items.loc[late_only, "topic_id"].tolist() == [topic_ids[i] for i in nearest]
    known = items["topic_id_every_split"] != ""
    assert known.sum() + late_only.sum() == len(items)
    assert (
        items.loc[known, "topic_id"].tolist() == items.loc[known, "topic_id_every_split"].tolist()
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


def prepare_textless(folder: Path) -> Path:
    """A CSV of ids and times alone (no text, no catalog), prepared into `folder`/dataset."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"u{user},i{(user * 3 + step) % 10},{1_600_000_000 + 60 * (user * 8 + step)}"
        for user in range(12)
        for step in range(8)
    ]
    (folder / "ids.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(lines) + "\n")
    prepare(read_dataset(folder / "ids.csv"), folder / "dataset")
    return folder / "dataset"


def test_a_dataset_without_text_has_no_word_or_text_vectors_and_trains_id_only(
    tmp_path: Path,
) -> None:
    from evorec.embedding.bundle import TextModel
    from evorec.encoder.config import EncoderConfig, TrainingConfig
    from evorec.model_cli import train_and_export

    layout = DatasetLayout(prepare_textless(tmp_path))
    counts = layout.read_manifest()["counts"]
    assert (counts["items"], counts["items_with_text_vector"]) == (10, 0)
    assert (counts["vocabulary"], counts["topics"]) == (0, 0)
    assert not pd.read_parquet(layout.items)["has_text_vector"].any()
    text = TextModel.load(layout)  # the empty vocabulary is written and read back
    assert text.embedder.embed(["anything"]) == (None, 0)
    assert text.topics.classify(None, ["c"]) == ""
    small = EncoderConfig(dim=8, max_len=10, blocks=1)
    with pytest.raises(ValueError, match=r"no item text vectors.*train the id-only transformer"):
        train_and_export(layout, small, TrainingConfig(epochs=1), tmp_path / "models", "encoder")
    id_only = replace(small, use_text=False)
    version = train_and_export(
        layout, id_only, TrainingConfig(epochs=1), tmp_path / "models", "encoder"
    )
    assert version == tmp_path / "models" / "encoder" / "1"
    assert (version / "saved_model.pb").exists()
