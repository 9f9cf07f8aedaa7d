"""Word vectors, SIF item vectors and topics, checked against the simulator's truth."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gensim.models import KeyedVectors

from evorec.data.artifacts import DatasetLayout
from evorec.data.synth import SyntheticDataset
from evorec.embedding.bundle import TextModel
from evorec.embedding.text_vectors import TextEmbedder
from evorec.embedding.word_vectors import load_pretrained


def truth_topics(synthetic: SyntheticDataset) -> dict[str, int]:
    return dict(zip(synthetic.items["item_id"], synthetic.item_topics.tolist(), strict=True))


def test_item_neighbours_share_the_items_topic(prepared: Path, synthetic: SyntheticDataset) -> None:
    layout = DatasetLayout(prepared)
    items = pd.read_parquet(layout.items)
    vectors = np.load(layout.item_vectors)[items["item_index"]]
    topic = np.array([truth_topics(synthetic)[i] for i in items["item_id"]])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    top5 = np.argsort(-similarity, axis=1)[:, :5]
    same_topic_share = (topic[top5] == topic[:, None]).mean()
    assert same_topic_share > 0.95
    # And the mean similarity within a topic is far above the mean across topics.
    same = topic[:, None] == topic[None, :]
    np.fill_diagonal(similarity, np.nan)
    assert np.nanmean(similarity[same]) > np.nanmean(similarity[~same]) + 0.3


def test_similar_words_come_from_the_same_topic_vocabulary(
    prepared: Path, synthetic: SyntheticDataset
) -> None:
    path = str(DatasetLayout(prepared).word_vectors)
    vectors = KeyedVectors.load_word2vec_format(path, binary=True)
    for words in synthetic.topic_words:
        neighbours = [w for w, _ in vectors.most_similar(words[0], topn=10)]
        assert sum(w in words for w in neighbours) >= 8, (words[0], neighbours)


def test_clusters_recover_the_true_topics_and_are_named_by_their_words(
    prepared: Path, synthetic: SyntheticDataset
) -> None:
    layout = DatasetLayout(prepared)
    items = pd.read_parquet(layout.items)
    truth = truth_topics(synthetic)
    pairs = Counter(zip(items["topic_id"], (truth[i] for i in items["item_id"]), strict=True))
    purity = sum(
        max(n for (t, _), n in pairs.items() if t == topic) for topic in {t for t, _ in pairs}
    )
    assert purity / len(items) > 0.95
    topics = json.loads(layout.topics.read_text())
    assert topics["source"] == "clusters"
    true_labels = set(synthetic.topic_labels)
    true_words = {w for label in true_labels for w in label.split(" / ")}
    for topic in topics["topics"]:
        assert set(topic["label"].split(" / ")) <= true_words


def test_a_new_text_is_classified_into_its_topic(
    prepared: Path, synthetic: SyntheticDataset
) -> None:
    model = TextModel.load(DatasetLayout(prepared))
    items = pd.read_parquet(DatasetLayout(prepared).items)
    truth = truth_topics(synthetic)
    for label in synthetic.topic_labels:
        vector, known = model.embedder.embed(label.split(" / "))
        assert known == 3
        topic = model.topics.classify(vector)
        members = items[items["topic_id"] == topic]["item_id"]
        true_topic = synthetic.topic_labels.index(label)
        assert Counter(truth[i] for i in members).most_common(1)[0][0] == true_topic


def test_a_text_without_known_words_has_no_vector(prepared: Path) -> None:
    model = TextModel.load(DatasetLayout(prepared))
    assert model.embedder.embed(["unheardof", "qqq"]) == (None, 0)
    assert model.embedder.embed([]) == (None, 0)
    vector, _ = model.embedder.embed(["unheardof", *model.embedder.vectors.index_to_key[:2]])
    assert vector is not None
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_pretrained_glove_and_word2vec_files_load(tmp_path: Path) -> None:
    (tmp_path / "glove.txt").write_text("cat 0.1 0.2 0.3\ndog 0.1 0.25 0.3\ncar -0.5 0.1 0.0\n")
    glove = load_pretrained(tmp_path / "glove.txt", "glove")
    assert glove.vector_size == 3
    assert glove.most_similar("cat", topn=1)[0][0] == "dog"
    (tmp_path / "w2v.txt").write_text("2 3\ncat 0.1 0.2 0.3\ndog 0.1 0.25 0.3\n")
    assert len(load_pretrained(tmp_path / "w2v.txt", "word2vec").key_to_index) == 2
    embedder = TextEmbedder(glove, {"cat": 10, "dog": 1})
    vector, known = embedder.embed(["cat", "dog", "bird"])
    assert known == 2
    assert vector is not None


def test_a_pretrained_row_of_the_wrong_dimension_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_text("2 3\ncat 0.1 0.2 0.3\ndog 0.1 0.25\n")
    with pytest.raises(ValueError, match=r"cannot read word2vec vectors from .*bad\.txt"):
        load_pretrained(tmp_path / "bad.txt", "word2vec")
