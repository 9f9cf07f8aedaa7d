"""`evorec data prepare`: raw interaction data in, a prepared dataset out.

read (any reader) -> clean (report) -> splits -> normalize text -> word vectors -> item text
vectors -> topics -> write the layout of `evorec.data.artifacts`. This is the offline job that
stands on the data layer and on the preprocess and embedding libraries; the services load
what it writes.

Item text vectors come from the text encoder the options name: the SIF mean of the word
vectors (word2vec, the default), or the pretrained MiniLM sentence model (minilm; English
only, so refused for Chinese text, which keeps jieba + Word2Vec). Word vectors are trained
and written either way: the model bundle and the retrain's preparation (which keeps the
serving word vectors) read them, and topics are labelled with the normalized words.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from gensim.models import KeyedVectors

from evorec.data.artifacts import FORMAT_VERSION, DatasetLayout, sha256_of
from evorec.data.cleaning import CleaningOptions, clean
from evorec.data.readers import read_dataset
from evorec.data.schema import RawDataset, item_document
from evorec.data.sequences import own_leave_one_out
from evorec.data.splits import TRAIN, leave_one_out, new_item_split, time_split
from evorec.data.synth import SimulatorConfig, simulate
from evorec.embedding.text_vectors import DEFAULT_A, TextEmbedder, count_words
from evorec.embedding.topics import (
    TopicModel,
    topics_from_categories,
    topics_from_clusters,
    topics_from_model,
)
from evorec.embedding.word_vectors import (
    PretrainedFormat,
    Word2VecOptions,
    load_pretrained,
    restricted,
    train_word2vec,
)
from evorec.preprocess.text import NormalizedText, TextOptions, normalize

Progress = Callable[[str], None]
TextEncoderName = Literal["word2vec", "minilm"]
TEXT_ENCODERS: tuple[TextEncoderName, ...] = ("word2vec", "minilm")
# MiniLM is refused when more than this share of the texts read as Chinese.
MINILM_MAX_CHINESE_SHARE = 0.01


@dataclass(frozen=True)
class PrepareOptions:
    """Every parameter of preparation; all are recorded in the manifest."""

    cleaning: CleaningOptions = field(default_factory=CleaningOptions)
    text: TextOptions = field(default_factory=TextOptions)
    word2vec: Word2VecOptions = field(default_factory=Word2VecOptions)
    pretrained: Path | None = None
    pretrained_format: PretrainedFormat = "word2vec"
    # Keep of the pretrained vectors only the words of this dataset's text: a retrain's
    # (options_following), whose vectors were trained on users' reviews, so that a word
    # only a deleted user wrote leaves with their events.
    pretrained_corpus_only: bool = False
    sif_a: float = DEFAULT_A
    # Number of text clusters when the catalog has no categories (None: chosen from its size).
    topics: int | None = None
    # A prepared dataset whose topics classify the items instead of new ones: a retrain's
    # (options_following), so that topic ids keep their meaning across model versions.
    topic_model: Path | None = None
    time_test_share: float = 0.2
    new_item_share: float = 0.1
    seed: int = 0
    # What turns an item's text into its vector; see the module docstring.
    text_encoder: TextEncoderName = "word2vec"
    # The folder `evorec models fetch minilm` filled (needed with text_encoder "minilm").
    minilm_dir: Path | None = None


def prepare_synthetic(
    out: Path, raw: Path, config: SimulatorConfig | None = None, progress: Progress = lambda m: None
) -> dict[str, Any]:
    """Simulates a dataset into `raw` and prepares it into `out`: the embedded default."""
    config = config or SimulatorConfig()
    progress("simulating")
    simulate(config).write(raw, config)
    return prepare(read_dataset(raw), out, PrepareOptions(topics=config.topics), progress)


def prepare(
    raw: RawDataset,
    out: Path,
    options: PrepareOptions | None = None,
    progress: Progress = lambda message: None,
) -> dict[str, Any]:
    """Prepares `raw` into the folder `out`; returns the manifest it wrote."""
    options = options or PrepareOptions()
    started = time.perf_counter()
    layout = DatasetLayout(out)

    progress("cleaning")
    data = clean(raw, options.cleaning)
    events, items = data.events, data.items
    progress("splitting")
    events["split_loo"] = leave_one_out(events)
    events["split_time"], time_cut = time_split(events, options.time_test_share)
    events["split_new_item"], new_items = new_item_split(
        events, options.new_item_share, options.seed
    )

    progress("normalizing text")

    def raw_documents(frame: pd.DataFrame) -> list[str]:
        rows: list[Any] = list(frame.itertuples())
        return [item_document(r.title, r.text, r.categories) for r in rows]

    item_texts = raw_documents(items)
    # What users wrote describes items only from training events: the review of a validation
    # or test event would tell the model about the event it is asked to predict, and every
    # held-out item of the new-item split must look as new at evaluation as in production.
    # Leave-one-out (and serving, whose model it trains) reads the reviews of its own training
    # events; the cold-start and evolution protocols, the word vectors, the SIF weights and
    # the topics only those of events that train every split.
    reviews = events[(events["text"] != "") & (events["split_loo"] == TRAIN)]
    in_every_split = _in_every_training_split(events).loc[reviews.index].to_numpy()
    item_normalized = [normalize(text, options.text) for text in item_texts]
    unused_normalized = [normalize(text, options.text) for text in raw_documents(data.unused_items)]
    user_normalized = [normalize(text, options.text) for text in reviews["text"]]
    if options.text_encoder == "minilm":
        _refuse_chinese(item_normalized + unused_normalized + user_normalized, options)
    item_docs = [n.tokens for n in item_normalized]
    user_docs = [n.tokens for n in user_normalized]
    every_split_docs = [doc for doc, kept in zip(user_docs, in_every_split, strict=True) if kept]
    corpus = item_docs + [n.tokens for n in unused_normalized] + every_split_docs

    progress("word vectors")
    counts = count_words(corpus)
    if options.pretrained is not None:
        vectors = load_pretrained(options.pretrained, options.pretrained_format)
        if options.pretrained_corpus_only:
            vectors = restricted(vectors, counts)
    elif any(count >= options.word2vec.min_count for count in counts.values()):
        vectors = train_word2vec(corpus, options.word2vec)
    else:
        # No word often enough to learn (a dataset of ids alone): an empty vocabulary, which
        # gensim refuses to train on, leaves every item without a text vector.
        vectors = KeyedVectors(options.word2vec.vector_size, dtype=np.float32)

    progress("item text vectors")
    loo_text = _item_text(items, item_texts, item_docs, reviews, user_docs)
    every_split_text = _item_text(
        items, item_texts, item_docs, reviews[in_every_split], every_split_docs
    )
    # One SIF space for both tables, the topic centroids and the texts the embedding service
    # embeds later: its common component is fitted on the text that trains every split.
    embedder = TextEmbedder(vectors, dict(counts), options.sif_a)
    embedder.fit_common_component(every_split_text.documents)
    text_encoder: dict[str, Any] = {"name": options.text_encoder}
    if options.text_encoder == "minilm":
        embedded, text_encoder = _minilm_vectors([loo_text.texts, every_split_text.texts], options)
        (item_vectors, has_vector), (every_split_vectors, every_split_has) = embedded
    else:
        item_vectors, has_vector = embedder.embed_many(loo_text.documents)
        every_split_vectors, every_split_has = embedder.embed_many(every_split_text.documents)
    dimension = item_vectors.shape[1]

    progress("topics")
    # The evolution protocol forecasts topics, so they are made of text that trains every split.
    topic_model, topic_ids = _topics(
        items, every_split_text.documents, every_split_vectors, every_split_has, options
    )
    # Serving gives each item the topic the embedding service would give it on an upsert:
    # a category naming a topic, else the nearest topic to its text vector; only where the
    # text that trains every split leaves it without one, so that both columns agree where
    # both have a topic. The evaluation protocols read that text's topics alone.
    items["topic_id"] = [
        topic or topic_model.classify(vector if has else None, categories)
        for topic, vector, has, categories in zip(
            topic_ids, item_vectors, has_vector, items["categories"], strict=True
        )
    ]
    items["topic_id_every_split"] = topic_ids
    items["has_text_vector"] = has_vector

    progress("writing")
    layout.text.mkdir(parents=True, exist_ok=True)
    events.to_parquet(layout.events, index=False)
    items.to_parquet(layout.items, index=False)
    vectors.save_word2vec_format(str(layout.word_vectors), binary=True)
    layout.write_json(layout.word_counts, dict(counts.most_common()))
    for path, table in (
        (layout.item_vectors, item_vectors),
        (layout.every_split_item_vectors, every_split_vectors),
    ):
        np.save(path, np.vstack([np.zeros((1, dimension), np.float32), table]))
    common = embedder.common_component
    np.savez(
        layout.sif,
        a=np.float32(options.sif_a),
        common_component=np.zeros(0) if common is None else common,
    )
    layout.write_json(layout.topics, topic_model.to_json())
    np.save(layout.topic_centroids, topic_model.centroids)
    layout.write_json(layout.report, data.report)
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": raw.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {
            "format": raw.source_format,
            "files": [{"name": p.name, "sha256": sha256_of(p)} for p in raw.files],
        },
        "parameters": _jsonable(asdict(options)),
        "counts": {
            "events": len(events),
            "users": data.report["users"],
            "items": len(items),
            "items_with_text_vector": int(has_vector.sum()),
            "items_with_text_vector_every_split": int(every_split_has.sum()),
            "vocabulary": len(vectors.key_to_index),
            "topics": len(topic_model.topics),
        },
        "dimension": dimension,
        "text_encoder": text_encoder,
        "splits": {
            "loo": {k: int(v) for k, v in events["split_loo"].value_counts().items()},
            "time_cut": time_cut,
            "new_item_count": len(new_items),
        },
        "seconds": round(time.perf_counter() - started, 2),
        "outputs": layout.output_hashes(),
    }
    layout.write_json(layout.manifest, manifest)
    return manifest


@dataclass(frozen=True)
class _ItemText:
    """Each item's text, in item_index order: its normalized tokens (for word vectors) and
    its raw text (which MiniLM reads whole)."""

    documents: list[list[str]]
    texts: list[str]


def _item_text(
    items: pd.DataFrame,
    item_texts: list[str],
    item_docs: list[list[str]],
    reviews: pd.DataFrame,
    review_docs: list[list[str]],
) -> _ItemText:
    """The catalog text of an item when it has a word, else what `reviews` say about it."""
    review_tokens: dict[int, list[str]] = {}
    review_texts: dict[int, list[str]] = {}
    for item_index, tokens, text in zip(
        reviews["item_index"], review_docs, reviews["text"], strict=True
    ):
        review_tokens.setdefault(int(item_index), []).extend(tokens)
        review_texts.setdefault(int(item_index), []).append(text)
    indexes = [int(index) for index in items["item_index"]]
    return _ItemText(
        documents=[
            doc or review_tokens.get(index, [])
            for doc, index in zip(item_docs, indexes, strict=True)
        ],
        texts=[
            text if doc else " ".join(review_texts.get(index, []))
            for text, doc, index in zip(item_texts, item_docs, indexes, strict=True)
        ],
    )


def _in_every_training_split(events: pd.DataFrame) -> pd.Series:
    """Whether each event is `train` under every split that preparation writes, and under
    the leave-one-out that the cold-start and evolution protocols make of their own training
    events to validate on (`ColdStart`, `Evolution`)."""
    train = (events[["split_loo", "split_time", "split_new_item"]] == TRAIN).all(axis=1)
    for split in ("split_time", "split_new_item"):
        own = events[events[split] == TRAIN]
        train.loc[own.index] = train.loc[own.index] & (own_leave_one_out(own) == TRAIN)
    return train


def _refuse_chinese(texts: list[NormalizedText], options: PrepareOptions) -> None:
    chinese = sum(t.language == "zh" for t in texts if t.tokens)
    with_words = sum(bool(t.tokens) for t in texts)
    if options.text.language == "zh" or chinese > MINILM_MAX_CHINESE_SHARE * max(1, with_words):
        raise ValueError(
            f"--text-encoder minilm reads English only, and {chinese:,} of {with_words:,} texts "
            "are Chinese: prepare this dataset with --text-encoder word2vec (jieba + Word2Vec)"
        )


def _minilm_vectors(
    text_sets: list[list[str]], options: PrepareOptions
) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """For each list of item texts, the MiniLM vectors and which items have one (a text in
    several lists is embedded once); and what the manifest records of the model (its files'
    SHA-256, which the embedding service checks it loads)."""
    from evorec.embedding.minilm import BATCH_SIZE, MAX_TOKENS, MiniLMEncoder
    from evorec.embedding.model_files import MINILM

    if options.minilm_dir is None:
        raise ValueError("--text-encoder minilm needs the folder of its files (minilm_dir)")
    encoder = MiniLMEncoder.load(options.minilm_dir)
    distinct = list(dict.fromkeys(text for texts in text_sets for text in texts))
    row_of = {text: row for row, text in enumerate(distinct)}
    vectors, token_counts = encoder.embed_many(distinct)
    embedded = []
    for texts in text_sets:
        rows = np.array([row_of[text] for text in texts], dtype=np.int64)
        embedded.append((vectors[rows], token_counts[rows] > 0))
    return embedded, {
        "name": "minilm",
        "model": MINILM.description,
        "package": f"{MINILM.package}=={MINILM.version}",
        "sha256": dict(MINILM.sha256),
        "max_tokens": MAX_TOKENS,
        "batch_size": BATCH_SIZE,
    }


def _topics(
    items: pd.DataFrame,
    documents: list[list[str]],
    vectors: np.ndarray,
    has_vector: np.ndarray,
    options: PrepareOptions,
) -> tuple[TopicModel, list[str]]:
    if options.topic_model is not None:
        source = DatasetLayout(options.topic_model)
        model = TopicModel.from_json(
            json.loads(source.topics.read_text()), np.load(source.topic_centroids)
        )
        return topics_from_model(model, list(items["categories"]), vectors, has_vector)
    from_categories = topics_from_categories(
        list(items["categories"]), documents, vectors, has_vector
    )
    if from_categories is not None and options.topics is None:
        return from_categories
    return topics_from_clusters(documents, vectors, has_vector, options.topics, options.seed)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
