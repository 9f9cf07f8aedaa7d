"""Interest topics of items: the catalog's categories where it has them, otherwise clusters
of the items' text vectors, each named by its most characteristic words.

Categories: an item's topic is its first category that fewer than `max_common_share` of the
items carry (so a root such as "Magazine Subscriptions", shared by all, is passed over).
Clusters: k-means (scipy) over the unit text vectors. Either way each topic has a centroid in
text-vector space, and a new item is classified by its category where that names a known
topic, else by the nearest centroid (cosine) of its text vector.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
from scipy.cluster.vq import kmeans2

TopicSource = Literal["categories", "clusters"]
LABEL_WORDS = 3


@dataclass(frozen=True)
class Topic:
    topic_id: str
    label: str
    top_words: list[str]
    size: int


def slug(name: str) -> str:
    """A stable id for a category name: lowercase words joined by '-'."""
    return "-".join(re.findall(r"[^\W_]+", name.casefold())) or "topic"


def characteristic_words(
    member_docs: Sequence[Sequence[str]], all_counts: Counter[str], total: int, count: int
) -> list[str]:
    """The words that most distinguish these documents from the rest: frequency in them
    times the log of how much more frequent they are there than overall."""
    counts: Counter[str] = Counter()
    for doc in member_docs:
        counts.update(set(doc))
    size = max(1, len(member_docs))
    scores = {
        word: (n / size) * math.log((n / size) / (all_counts[word] / total))
        for word, n in counts.items()
        if n >= 2 or size < 4
    }
    return [word for word, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:count]]


@dataclass
class TopicModel:
    """Topics, their centroids, and the classification of items into them."""

    source: TopicSource
    topics: list[Topic]
    centroids: np.ndarray  # [topics, dim], unit rows (zeros for a topic without vectors)

    def __post_init__(self) -> None:
        self._by_id = {t.topic_id: i for i, t in enumerate(self.topics)}

    def label(self, topic_id: str) -> str:
        index = self._by_id.get(topic_id)
        return self.topics[index].label if index is not None else ""

    def classify(self, vector: np.ndarray | None, categories: Sequence[str] = ()) -> str:
        """The topic of an item: a category naming a known topic, else the nearest centroid;
        "" when neither says anything."""
        if self.source == "categories":
            for category in categories:
                if slug(category) in self._by_id:
                    return slug(category)
        if vector is None or not len(self.topics):
            return ""
        return self.topics[int(np.argmax(self.centroids @ vector))].topic_id

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "topics": [asdict(t) for t in self.topics]}

    @classmethod
    def from_json(cls, data: dict[str, Any], centroids: np.ndarray) -> TopicModel:
        return cls(data["source"], [Topic(**t) for t in data["topics"]], centroids)


def _centroids(
    vectors: np.ndarray, has_vector: np.ndarray, assignment: list[int], k: int
) -> np.ndarray:
    centroids = np.zeros((k, vectors.shape[1]), dtype=np.float32)
    labels = np.asarray(assignment)
    for topic in range(k):
        members = (labels == topic) & has_vector
        if members.any():
            mean = vectors[members].mean(axis=0)
            norm = np.linalg.norm(mean)
            centroids[topic] = mean / norm if norm > 0 else mean
    return centroids


def topics_from_categories(
    categories: Sequence[Sequence[str]],
    documents: Sequence[Sequence[str]],
    vectors: np.ndarray,
    has_vector: np.ndarray,
    max_common_share: float = 0.9,
) -> tuple[TopicModel, list[str]] | None:
    """Topics from the catalog's categories, and each item's topic id ("" for none); None
    when too few items have a usable category."""
    share = Counter(c for cats in categories for c in set(cats))
    limit = max_common_share * len(categories)
    chosen = [next((c for c in cats if share[c] < limit), "") for cats in categories]
    names = sorted({c for c in chosen if c}, key=lambda c: (-share[c], c))
    if len(names) < 2 or sum(1 for c in chosen if c) < 0.5 * len(categories):
        return None
    index = {name: i for i, name in enumerate(names)}
    assignment = [index.get(c, -1) for c in chosen]
    all_counts = Counter(w for doc in documents for w in set(doc))
    total = max(1, len(documents))
    topics = [
        Topic(
            topic_id=slug(name),
            label=name,
            top_words=characteristic_words(
                [d for d, a in zip(documents, assignment, strict=True) if a == i],
                all_counts,
                total,
                5,
            ),
            size=assignment.count(i),
        )
        for i, name in enumerate(names)
    ]
    centroids = _centroids(vectors, has_vector, assignment, len(names))
    model = TopicModel("categories", topics, centroids)
    return model, [slug(c) if c else "" for c in chosen]


def topics_from_clusters(
    documents: Sequence[Sequence[str]],
    vectors: np.ndarray,
    has_vector: np.ndarray,
    count: int | None = None,
    seed: int = 0,
) -> tuple[TopicModel, list[str]]:
    """k-means topics over the items that have text vectors; items without one get ""."""
    rows = np.flatnonzero(has_vector)
    if rows.size == 0:
        return TopicModel("clusters", [], np.zeros((0, vectors.shape[1]), np.float32)), [""] * len(
            documents
        )
    k = count or max(2, min(50, round(math.sqrt(rows.size / 5))))
    k = min(k, rows.size)
    _, labels = kmeans2(vectors[rows].astype(np.float64), k, minit="++", seed=seed)
    # Order topics by size, largest first, so that t0 is the biggest.
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    assignment = [-1] * len(documents)
    for row, label in zip(rows, labels, strict=True):
        assignment[row] = int(rank[label])
    all_counts = Counter(w for doc in documents for w in set(doc))
    total = max(1, len(documents))
    topics = []
    for topic in range(k):
        members = [d for d, a in zip(documents, assignment, strict=True) if a == topic]
        words = characteristic_words(members, all_counts, total, 5)
        topics.append(Topic(f"t{topic}", " / ".join(words[:LABEL_WORDS]), words, len(members)))
    centroids = _centroids(vectors, has_vector, assignment, k)
    return TopicModel("clusters", topics, centroids), [
        f"t{a}" if a >= 0 else "" for a in assignment
    ]


def topics_from_model(
    model: TopicModel,
    categories: Sequence[Sequence[str]],
    vectors: np.ndarray,
    has_vector: np.ndarray,
) -> tuple[TopicModel, list[str]]:
    """Each item's topic id under an existing topic model, as the embedding service
    classifies an upserted item, and the model with its topics' sizes counted on these
    items: a retrain keeps the serving dataset's topics, so that a topic id means the same in
    every version (clustering afresh numbers and cuts them anew)."""
    if model.centroids.shape[1] != vectors.shape[1]:
        raise ValueError(
            f"the topic model's centroids have {model.centroids.shape[1]} dimensions, "
            f"the item vectors {vectors.shape[1]}"
        )
    ids = [
        model.classify(vector if has else None, cats)
        for vector, has, cats in zip(vectors, has_vector, categories, strict=True)
    ]
    sizes = Counter(ids)
    topics = [replace(topic, size=sizes.get(topic.topic_id, 0)) for topic in model.topics]
    return TopicModel(model.source, topics, model.centroids), ids
