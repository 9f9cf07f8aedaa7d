"""From a user's history (and user vector) to a ranked, filtered, diversified, explained list.

Candidate sources, each proposing its best `candidates_per_source` allowed items:

- encoder: the user vector's dot product with every item's vector (new items included);
- item similarity: co-occurrence cosine neighbours of the user's recent items;
- Markov: the items that most often followed the user's last item;
- text neighbours: items whose text is closest to the recent items' text (new items too);
- popularity: the most frequent items, the whole answer for a user with no history.

They are blended by weighted reciprocal-rank fusion, sum over sources of w / (10 + rank):
ranks, unlike raw scores, compare across sources, and an item proposed by several sources
rises (Cormack et al., SIGIR 2009). Their constant is 60; a smaller one lets the top of one
strong source (the encoder) outweigh middling ranks in many weak ones, which would otherwise
bury items that only the encoder and the text know (new ones). Maximal marginal relevance
(Carbonell and Goldstein, 1998) then picks the list one item at a time, trading relevance
for dissimilarity to the items already picked (cosine in encoder space), by the request's
diversity strength.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from evorec.platform.config import RecommendSettings
from evorec.ranking.item_space import ItemSpace
from evorec.v1 import common_pb2, ranking_pb2

RRF_K = 10.0
# The recent items that similarity, text neighbours and reasons look at, newest weighing most.
RECENT_ITEMS = 5
RECENT_WEIGHTS = np.array([1.0, 0.8, 0.6, 0.4, 0.2])

ENCODER = ranking_pb2.CANDIDATE_SOURCE_ENCODER
ITEM_SIMILARITY = ranking_pb2.CANDIDATE_SOURCE_ITEM_SIMILARITY
MARKOV = ranking_pb2.CANDIDATE_SOURCE_MARKOV
TEXT_NEIGHBOURS = ranking_pb2.CANDIDATE_SOURCE_TEXT_NEIGHBOURS
POPULARITY = ranking_pb2.CANDIDATE_SOURCE_POPULARITY
PERSONAL_SOURCES = (ENCODER, ITEM_SIMILARITY, MARKOV, TEXT_NEIGHBOURS)


def source_name(source: int) -> str:
    """`encoder`, `item_similarity`, ... for a CandidateSource value."""
    return ranking_pb2.CandidateSource.Name(source).removeprefix("CANDIDATE_SOURCE_").lower()  # type: ignore[arg-type]


_DID: dict[int, str] = {
    common_pb2.EVENT_TYPE_VIEW: "viewed",
    common_pb2.EVENT_TYPE_CLICK: "clicked",
    common_pb2.EVENT_TYPE_RATING: "rated",
    common_pb2.EVENT_TYPE_PURCHASE: "bought",
    common_pb2.EVENT_TYPE_REVIEW: "reviewed",
    common_pb2.EVENT_TYPE_TAG: "tagged",
    common_pb2.EVENT_TYPE_QUERY: "searched for",
}


@dataclass
class Query:
    """One validated request, in the item space's indexes."""

    history: np.ndarray  # item indexes, oldest first (unknown items already left out)
    event_types: np.ndarray  # EventType of each history entry
    k: int
    diversity: float
    exclude_seen: bool = True
    exclude: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    include_topics: Sequence[str] = ()
    exclude_topics: Sequence[str] = ()


@dataclass
class Ranked:
    index: int
    score: float
    sources: list[int]
    reason: str


@dataclass
class Answer:
    items: list[Ranked]
    sources_used: list[int]
    cold_start: bool


def allowed_items(space: ItemSpace, query: Query) -> np.ndarray:
    """Boolean mask of the items the filters let through."""
    allowed = np.ones(len(space), dtype=bool)
    allowed[0] = False
    allowed[query.exclude] = False
    if query.exclude_seen:
        allowed[query.history] = False
    codes = {t: c for c, t in enumerate(space.topics)}
    if query.include_topics:
        allowed &= np.isin(space.topic_codes, [codes[t] for t in query.include_topics])
    if query.exclude_topics:
        allowed &= ~np.isin(space.topic_codes, [codes[t] for t in query.exclude_topics])
    return allowed


def best(scores: np.ndarray, allowed: np.ndarray, n: int, positive: bool = False) -> np.ndarray:
    """Indexes of the `n` highest-scoring allowed items, best first."""
    masked = np.where(allowed & (scores > 0) if positive else allowed, scores, -np.inf)
    n = min(n, int(np.isfinite(masked).sum()))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-masked, n - 1)[:n]
    return top[np.argsort(-masked[top], kind="stable")]


def recent_items(history: np.ndarray, limit: int = RECENT_ITEMS) -> np.ndarray:
    """The newest distinct items of a history, newest first."""
    seen: list[int] = []
    for index in history[::-1]:
        if int(index) not in seen:
            seen.append(int(index))
            if len(seen) == limit:
                break
    return np.array(seen, dtype=np.int64)


def _padded(scores: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([scores, np.zeros(size - len(scores), dtype=scores.dtype)])


def source_scores(
    space: ItemSpace, history: np.ndarray, user_vector: np.ndarray | None
) -> dict[int, tuple[np.ndarray, bool]]:
    """Each source's score of every item, and whether only positive scores propose one."""
    if len(history) == 0:
        return {POPULARITY: (space.popularity, True)}
    scores: dict[int, tuple[np.ndarray, bool]] = {}
    if user_vector is not None:
        scores[ENCODER] = (space.table @ user_vector, False)
    recent = recent_items(history)
    weights = RECENT_WEIGHTS[: len(recent)]
    trained = recent[recent <= space.n_model_items]
    if len(trained):
        trained_weights = weights[recent <= space.n_model_items]
        similar = trained_weights @ space.bundle.item_similarity[trained].toarray()
        scores[ITEM_SIMILARITY] = (_padded(similar, len(space)), True)
        following = space.bundle.markov[trained[0]].toarray().ravel()
        scores[MARKOV] = (_padded(following, len(space)), True)
    query = weights @ space.text_vectors[recent]
    if np.any(query):
        scores[TEXT_NEIGHBOURS] = (space.text_vectors @ query, True)
    scores[POPULARITY] = (space.popularity, True)
    return scores


def mmr(
    candidates: np.ndarray, relevance: np.ndarray, vectors: np.ndarray, k: int, diversity: float
) -> list[int]:
    """Positions in `candidates` picked by maximal marginal relevance: each next pick
    maximizes (1 - diversity) * relevance - diversity * (max cosine to the picks so far);
    relevance is scaled to [0, 1] over the candidates first."""
    if len(candidates) == 0:
        return []
    spread = relevance.max() - relevance.min()
    scaled = (relevance - relevance.min()) / spread if spread > 0 else np.ones_like(relevance)
    if diversity <= 0:
        return list(np.argsort(-scaled, kind="stable")[:k])
    unit = vectors[candidates]
    closest = np.full(len(candidates), -np.inf)
    picked: list[int] = []
    available = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = np.where(available, (1 - diversity) * scaled - diversity * penalty, -np.inf)
        choice = int(np.argmax(value))
        picked.append(choice)
        available[choice] = False
        closest = np.maximum(closest, unit @ unit[choice])
    return picked


def _weights(settings: RecommendSettings) -> dict[int, float]:
    return {
        ENCODER: settings.weight_encoder,
        ITEM_SIMILARITY: settings.weight_item_similarity,
        MARKOV: settings.weight_markov,
        TEXT_NEIGHBOURS: settings.weight_text_neighbours,
        POPULARITY: settings.weight_popularity,
    }


def recommend(
    space: ItemSpace,
    query: Query,
    user_vector: np.ndarray | None,
    settings: RecommendSettings,
) -> Answer:
    """The answer to `query` (`user_vector`: None when the encoder did not answer)."""
    allowed = allowed_items(space, query)
    cold_start = len(query.history) == 0
    weights = _weights(settings)
    if cold_start:
        weights[POPULARITY] = 1.0
    blended = np.zeros(len(space))
    contributions: dict[int, dict[int, float]] = {}
    used = []
    for source, (scores, positive) in source_scores(space, query.history, user_vector).items():
        if weights[source] <= 0:
            continue
        top = best(scores, allowed, settings.candidates_per_source, positive)
        if len(top) == 0:
            continue
        used.append(source)
        gain = weights[source] / (RRF_K + np.arange(1, len(top) + 1))
        blended[top] += gain
        for index, value in zip(top.tolist(), gain.tolist(), strict=True):
            contributions.setdefault(index, {})[source] = value
    pool = best(blended, blended > 0, max(3 * query.k, 50))
    order = mmr(pool, blended[pool], space.unit_table, query.k, query.diversity)
    recent = recent_items(query.history)
    items = []
    for position in order:
        index = int(pool[position])
        sources = contributions[index]
        items.append(
            Ranked(
                index=index,
                score=float(blended[index]),
                sources=sorted(sources, key=lambda s: -sources[s]),
                reason=reason(space, query, recent, index, max(sources, key=sources.__getitem__)),
            )
        )
    return Answer(items=items, sources_used=sorted(used), cold_start=cold_start)


def _did(query: Query, index: int) -> str:
    where = np.flatnonzero(query.history == index)
    kind = int(query.event_types[where[-1]]) if len(where) else 0
    return _DID.get(kind, "chose")


def reason(space: ItemSpace, query: Query, recent: np.ndarray, index: int, source: int) -> str:
    """A short explanation for a person, from the source that contributed most."""
    topic = space.topic_of(index)
    topic_label = space.topic_labels.get(topic, topic)
    if source == POPULARITY or len(recent) == 0:
        return f"popular in {topic_label}" if topic_label else "popular"
    if space.is_new(index) and source in (ENCODER, TEXT_NEIGHBOURS):
        return f"new in {topic_label}" if topic_label else "new"
    if source == MARKOV:
        last = int(recent[recent <= space.n_model_items][0])
        return f"often chosen after {space.label(last)}"
    if source == ITEM_SIMILARITY:
        trained = recent[recent <= space.n_model_items]
        similarity = space.bundle.item_similarity[trained, index].toarray().ravel()
        anchor = int(trained[int(np.argmax(similarity))])
    else:
        vectors = space.text_vectors if source == TEXT_NEIGHBOURS else space.unit_table
        anchor = int(recent[int(np.argmax(vectors[recent] @ vectors[index]))])
    return f"because you {_did(query, anchor)} {space.label(anchor)}"
