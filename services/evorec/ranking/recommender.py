"""From a user's history (and user vector) to a ranked, filtered, diversified, explained list.

Candidate sources, each proposing its best `candidates_per_source` allowed items (k, when it
is larger):

- encoder: the items whose vectors have the largest dot product with the user vector (new
  items included), from the item space's vector index (exact, or approximate for large
  catalogs: evorec.vector_index);
- item similarity: co-occurrence cosine neighbours of the user's recent items;
- Markov: the items that most often followed the user's last item;
- text neighbours: items whose text is closest to the recent items' text (new items too),
  from the item space's text index;
- popularity: the most frequent items, the whole answer for a user with no history.

They are blended by weighted reciprocal-rank fusion, sum over sources of w / (10 + rank):
ranks, unlike raw scores, compare across sources, and an item proposed by several sources
rises (Cormack et al., SIGIR 2009). Their constant is 60; a smaller one lets the top of one
strong source (the encoder) outweigh middling ranks in many weak ones, which would otherwise
bury items that only the encoder and the text know (new ones). Maximal marginal relevance
(Carbonell and Goldstein, 1998) then picks the list one item at a time, trading relevance
for dissimilarity to the items already picked (cosine in encoder space), by the request's
diversity strength.

An optional forecast term (`weight_forecast`, off by default: BENCHMARKS.md, "Ranking that
uses the forecast") then lifts each proposed item by weight * m / (10 + 1), m the forecast
mass of its topic: the user's own topic Markov chain rolled FORECAST_HORIZON steps from their
last topic (`evorec.evolution.methods.topic_markov`). It is chosen over the encoder's
next-item softmax summed per topic because it needs no encoder answer and costs one pass over
the history's topic codes, and because the encoder's view already ranks the candidates; the
chain adds the user's habits of moving between topics. At weight 1 a topic holding all the
mass lifts its items as much as first place in the encoder source does. The term re-weights
candidates only: it proposes none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from evorec.evolution import methods
from evorec.platform.enums import enum_label
from evorec.ranking.item_space import ItemSpace
from evorec.ranking.settings import RecommendSettings
from evorec.v1 import common_pb2, ranking_pb2

RRF_K = 10.0
# The recent items that similarity, text neighbours and reasons look at, newest weighing most.
RECENT_ITEMS = 5
RECENT_WEIGHTS = np.array([1.0, 0.8, 0.6, 0.4, 0.2], dtype=np.float32)

ENCODER = ranking_pb2.CANDIDATE_SOURCE_ENCODER
ITEM_SIMILARITY = ranking_pb2.CANDIDATE_SOURCE_ITEM_SIMILARITY
MARKOV = ranking_pb2.CANDIDATE_SOURCE_MARKOV
TEXT_NEIGHBOURS = ranking_pb2.CANDIDATE_SOURCE_TEXT_NEIGHBOURS
POPULARITY = ranking_pb2.CANDIDATE_SOURCE_POPULARITY
PERSONAL_SOURCES = (ENCODER, ITEM_SIMILARITY, MARKOV, TEXT_NEIGHBOURS)
# The forecast term looks this many interactions ahead (the size of one answer).
FORECAST_HORIZON = 10


def source_name(source: int) -> str:
    """`encoder`, `item_similarity`, ... for a CandidateSource value."""
    return enum_label(ranking_pb2.CandidateSource, source)


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
    codes = space.topic_code
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


def _top_entries(
    indices: np.ndarray, values: np.ndarray, allowed: np.ndarray, n: int
) -> np.ndarray:
    """The `n` allowed indices with the highest positive values, best first."""
    keep = allowed[indices] & (values > 0)
    indices, values = indices[keep], values[keep]
    return indices[np.argsort(-values, kind="stable")[:n]]


@dataclass
class Candidates:
    """Each source's proposals (indexes, best first), and what the reasons need."""

    by_source: dict[int, np.ndarray]
    recent: np.ndarray
    # The item-similarity rows of the recent trained items: (item, its neighbours, weights).
    similar_rows: list[tuple[int, np.ndarray, np.ndarray]]


def candidates(
    space: ItemSpace,
    history: np.ndarray,
    user_vector: np.ndarray | None,
    allowed: np.ndarray,
    n: int,
) -> Candidates:
    """Up to `n` allowed items from each source. The sparse sources (similarity, Markov) are
    read from their rows' non-zeros; the encoder's and the text neighbours' from the vector
    indexes; popularity from the head of the popularity order."""
    recent = recent_items(history)
    by_source: dict[int, np.ndarray] = {}
    similar_rows: list[tuple[int, np.ndarray, np.ndarray]] = []
    if len(recent):
        if user_vector is not None:
            by_source[ENCODER] = space.encoder_index.search(user_vector, n, allowed)[0]
        weights = RECENT_WEIGHTS[: len(recent)]
        trained = recent <= space.n_model_items
        similarity, markov = space.bundle.item_similarity, space.bundle.markov
        for item in recent[trained].tolist():
            start, end = similarity.indptr[item], similarity.indptr[item + 1]
            similar_rows.append((item, similarity.indices[start:end], similarity.data[start:end]))
        if similar_rows:
            item_weights = weights[trained]
            indices = np.concatenate([row for _, row, _ in similar_rows])
            values = np.concatenate(
                [data * w for (_, _, data), w in zip(similar_rows, item_weights, strict=True)]
            )
            unique, inverse = np.unique(indices, return_inverse=True)
            summed = np.bincount(inverse, weights=values, minlength=len(unique))
            by_source[ITEM_SIMILARITY] = _top_entries(unique, summed, allowed, n)
            last = similar_rows[0][0]
            start, end = markov.indptr[last], markov.indptr[last + 1]
            by_source[MARKOV] = _top_entries(
                markov.indices[start:end], markov.data[start:end], allowed, n
            )
        query = weights @ space.text_vectors[recent]
        if np.any(query):
            found, scores = space.text_index.search(query, n, allowed)
            by_source[TEXT_NEIGHBOURS] = found[scores > 0]
    by_source[POPULARITY] = first_allowed(space.popular_order, allowed, n)
    return Candidates({s: c for s, c in by_source.items() if len(c)}, recent, similar_rows)


def first_allowed(order: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """The first `n` allowed entries of `order`, reading only as much of it as they need (a
    growing prefix), not the whole catalog."""
    end = n
    while True:
        head = order[:end]
        found: np.ndarray = head[allowed[head]]
        if len(found) >= n or end >= len(order):
            return found[:n]
        end *= 4


def mmr(relevance: np.ndarray, unit: np.ndarray, k: int, diversity: float) -> list[int]:
    """Positions among the candidates picked by maximal marginal relevance: each next pick
    maximizes (1 - diversity) * relevance - diversity * (max cosine to the picks so far);
    relevance is scaled to [0, 1] over the candidates first. `unit` holds the candidates'
    vectors of length 1, one row each."""
    if len(relevance) == 0:
        return []
    spread = relevance.max() - relevance.min()
    scaled = (relevance - relevance.min()) / spread if spread > 0 else np.ones_like(relevance)
    if diversity <= 0:
        return list(np.argsort(-scaled, kind="stable")[:k])
    relevant = (1 - diversity) * scaled
    # The largest cosine of each candidate to the picks so far (none yet: no penalty).
    closest = np.zeros(len(relevance))
    picked: list[int] = []
    for _ in range(min(k, len(relevance))):
        value = relevant - diversity * closest
        value[picked] = -np.inf
        choice = int(np.argmax(value))
        cosine = unit @ unit[choice]
        if picked:
            np.maximum(closest, cosine, out=closest)
        else:
            closest[:] = cosine
        picked.append(choice)
    return picked


def _weights(settings: RecommendSettings) -> dict[int, float]:
    return {
        ENCODER: settings.weight_encoder,
        ITEM_SIMILARITY: settings.weight_item_similarity,
        MARKOV: settings.weight_markov,
        TEXT_NEIGHBOURS: settings.weight_text_neighbours,
        POPULARITY: settings.weight_popularity,
    }


def topic_forecast(space: ItemSpace, history: np.ndarray) -> np.ndarray:
    """The forecast mass of each topic code over the next FORECAST_HORIZON interactions,
    from the user's own topic transitions (zeros when no history item has a topic)."""
    codes = space.topic_codes[history]
    topics = [space.topics[c] for c in codes[codes >= 0]]
    mass = np.zeros(len(space.topics))
    if topics:
        for topic, share in methods.topic_markov(topics, FORECAST_HORIZON).items():
            mass[space.topic_code[topic]] = share
    return mass


def forecast_gain(
    space: ItemSpace, history: np.ndarray, items: np.ndarray, weight: float
) -> np.ndarray:
    """The forecast term of each of `items`: weight * (its topic's mass) / (RRF_K + 1)."""
    mass: np.ndarray = np.append(topic_forecast(space, history), 0.0)  # code -1 reads 0
    lift: np.ndarray = mass[space.topic_codes[items]] * (weight / (RRF_K + 1))
    return lift


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
    # Each source proposes at least k items, so that k allowed items can be answered.
    per_source = max(settings.candidates_per_source, query.k)
    found = candidates(space, query.history, user_vector, allowed, per_source)
    # Each source's gain per item, over the union of the proposals only.
    used = [s for s in found.by_source if weights[s] > 0]
    union, inverse = np.unique(
        np.concatenate([found.by_source[s] for s in used] or [np.zeros(0, np.int64)]),
        return_inverse=True,
    )
    gains = np.zeros((len(used), len(union)))
    start = 0
    for row, source in enumerate(used):
        top = found.by_source[source]
        gains[row, inverse[start : start + len(top)]] = weights[source] / (
            RRF_K + np.arange(1, len(top) + 1)
        )
        start += len(top)
    blended = gains.sum(axis=0)
    if settings.weight_forecast > 0 and len(query.history):
        blended += forecast_gain(space, query.history, union, settings.weight_forecast)
    pool_positions = best(blended, blended > 0, max(3 * query.k, 50))
    pool = union[pool_positions]
    unit = space.unit_rows(pool)
    order = mmr(blended[pool_positions], unit, query.k, query.diversity)
    reasons = Reasons(space, query, found)
    items = []
    for position in order:
        index = int(pool[position])
        column = gains[:, pool_positions[position]]
        contributed = {used[row]: float(column[row]) for row in np.flatnonzero(column)}
        strongest = max(contributed, key=contributed.__getitem__)
        items.append(
            Ranked(
                index=index,
                score=float(blended[pool_positions[position]]),
                sources=sorted(contributed, key=lambda s: -contributed[s]),
                reason=reasons.of(index, strongest, unit[position]),
            )
        )
    return Answer(items=items, sources_used=sorted(used), cold_start=cold_start)


class Reasons:
    """Short explanations for a person of one answer's items, each from the source that
    contributed most to the item. What every explanation reads (the recent items' vectors of
    length 1, what the user last did with each) is computed once per answer."""

    def __init__(self, space: ItemSpace, query: Query, found: Candidates) -> None:
        self.space = space
        self.found = found
        self.recent_unit = space.unit_rows(found.recent)
        # The recent items are the newest distinct ones: read from the end, the history
        # reaches each of them within a few entries.
        self.did: dict[int, str] = {}
        wanted = set(found.recent.tolist())
        newest_first = zip(
            query.history[::-1].tolist(), query.event_types[::-1].tolist(), strict=True
        )
        for item, kind in newest_first:
            if item in wanted and item not in self.did:
                self.did[item] = _DID.get(kind, "chose")
                if len(self.did) == len(wanted):
                    break

    def of(self, index: int, source: int, unit: np.ndarray) -> str:
        """The reason for item `index` (`unit`: its encoder-space vector of length 1)."""
        space, found = self.space, self.found
        topic = space.topic_of(index)
        topic_label = space.topic_labels.get(topic, topic)
        recent = found.recent
        if source == POPULARITY or len(recent) == 0:
            return f"popular in {topic_label}" if topic_label else "popular"
        if space.is_new(index) and source in (ENCODER, TEXT_NEIGHBOURS):
            return f"new in {topic_label}" if topic_label else "new"
        if source == MARKOV:
            return f"often chosen after {space.label(found.similar_rows[0][0])}"
        if source == ITEM_SIMILARITY:
            strength = [
                float(data[neighbours == index].sum()) for _, neighbours, data in found.similar_rows
            ]
            anchor = found.similar_rows[int(np.argmax(strength))][0]
        else:
            if source == TEXT_NEIGHBOURS:
                similarity = space.text_vectors[recent] @ space.text_vectors[index]
            else:
                similarity = self.recent_unit @ unit
            anchor = int(recent[int(np.argmax(similarity))])
        return f"because you {self.did.get(anchor, 'chose')} {space.label(anchor)}"
