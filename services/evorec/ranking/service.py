"""RankingService: what a user should see now.

ForecastInterests (evorec.ranking.forecast) answers where a user's interests are going, by
every forecast the model version holds.

For each Recommend request: the user's newest events from the InterestService (read in one
call with those of the requests that arrive meanwhile, `evorec.ranking.history`), or the
inline history -> the user vector from the encoder backend (in-process SavedModel or TF Serving,
batched with concurrent requests) -> the candidate sources, blend, filters and MMR of
`evorec.ranking.recommender` -> items with their sources and reasons.

It degrades rather than fails: when the encoder is unreachable, overloaded or too slow for
what is left of the deadline, the answer comes from the other sources; when the interest
service is unreachable or too slow, from popularity; when the catalog mirror is stale, from
the items it has. Each dependency gets a bounded share of the deadline, so that time is left
to answer without it; after a few encoder outages in a row, requests skip the encoder for a
second (a circuit breaker, one request probing it) rather than each wait on it. The response
names the sources that were wanted but missing. Any other
failure of the encoder is a bug, not an outage: the call fails with INTERNAL, logged with
its request id and counted (`evorec_ranking_encoder_errors_total`). Health is NOT_SERVING
only until a model bundle is loaded: with one, popularity alone is still a useful answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from prometheus_client import Counter
from threadpoolctl import threadpool_limits

from evorec.encoder.backends import (
    Batcher,
    EncoderBackend,
    InProcessBackend,
    TFServingBackend,
    is_expected_failure,
)
from evorec.encoder.bundle import ModelBundle
from evorec.encoder.repository import ModelRepository
from evorec.platform import context
from evorec.platform.background import BackgroundTasks
from evorec.platform.circuit_breaker import CircuitBreaker
from evorec.platform.clients import embedding_client, interest_client
from evorec.platform.config import Settings
from evorec.platform.errors import FailedPrecondition, ResourceExhausted, Violations
from evorec.platform.server import GrpcService
from evorec.platform.validation import check_id, check_time
from evorec.ranking.catalog import CatalogMirror
from evorec.ranking.forecast import forecast_response, parse_forecast_request, stored_history
from evorec.ranking.history import RecentItemsReader
from evorec.ranking.item_space import ItemSpace
from evorec.ranking.recommender import (
    ENCODER,
    PERSONAL_SOURCES,
    TEXT_NEIGHBOURS,
    Answer,
    Query,
    recommend,
)
from evorec.ranking.settings import RecommendSettings
from evorec.v1 import interest_pb2_grpc, ranking_pb2, ranking_pb2_grpc

log = logging.getLogger("evorec.ranking")
MAX_K = 1_000
MAX_INLINE_HISTORY = 10_000
MAX_EXCLUDED_ITEMS = 10_000
MAX_TOPICS = 1_000
MAX_BATCH = 256
# An answer over a catalog of at least OFFLOAD_ITEMS items (its filters and products are
# O(items)), or with k of at least OFFLOAD_K (MMR and the response are O(k^2) and O(k)), is
# computed in a worker thread, so that the event loop goes on serving other callers (numpy
# releases the GIL in its large operations); a small one is computed in place, where a thread
# hop would cost more than it saves.
OFFLOAD_ITEMS = 50_000
OFFLOAD_K = 100
# A heavy request (k of at least OFFLOAD_K, an inline history of at least HEAVY_HISTORY
# items, or at least HEAVY_TOPICS topics in its filter) waits for one of HEAVY_CONCURRENCY
# slots, so that requests at the limits cannot take every core from the small ones; when
# HEAVY_WAITING already wait, it is answered RESOURCE_EXHAUSTED at once (retry later). The
# heavy requests of one RecommendBatch count as one waiting caller and take the slots in turn.
HEAVY_HISTORY = 1_000
HEAVY_TOPICS = 100
HEAVY_CONCURRENCY = 1
HEAVY_WAITING = 8
# Shares of what is left of the inbound deadline that each dependency may take, so that a
# hung one leaves time to answer without it: the interest service first (its history), then
# the encoder (of what is left after the history came).
INTEREST_SHARE_OF_DEADLINE = 0.3
ENCODER_SHARE_OF_DEADLINE = 0.5
# After this many encoder outages in a row (unreachable, out of time, overloaded), requests
# answer without the encoder at once for ENCODER_OPEN_S seconds, then one request tries it
# again (evorec.platform.circuit_breaker): a model server that is down, restarting or hung
# costs the other requests nothing, instead of each its share of the deadline.
ENCODER_FAILURES_TO_OPEN = 3
ENCODER_OPEN_S = 1.0


class EncoderSkipped(Exception):
    """The encoder's circuit breaker is open: answer without it."""


@dataclass
class Subject:
    """A validated request before its history is known."""

    user_id: str
    query: Query
    # Inline histories arrive as indexes; a stored user's is fetched.
    inline: bool


def parse_request(
    request: ranking_pb2.RecommendRequest,
    space: ItemSpace,
    settings: RecommendSettings,
    violations: Violations,
    prefix: str = "",
) -> Subject:
    """Validates `request` into a Subject; problems go to `violations`, fields named with
    `prefix` (`requests[3].`)."""
    k = request.k if request.HasField("k") else settings.default_k
    violations.require(1 <= k <= MAX_K, f"{prefix}k", f"must be 1 to {MAX_K:,}")
    diversity = request.diversity if request.HasField("diversity") else settings.diversity
    violations.require(
        0 <= diversity <= 1 and not math.isnan(diversity),
        f"{prefix}diversity",
        "must be 0 to 1",
    )
    history = np.zeros(0, dtype=np.int64)
    types = np.zeros(0, dtype=np.int32)
    subject = request.WhichOneof("subject")
    if subject is None:
        violations.add(f"{prefix}user_id", "set user_id or history")
    elif subject == "user_id":
        check_id(violations, request.user_id, f"{prefix}user_id")
    else:
        field = f"{prefix}history.items"
        violations.require(len(request.history.items) > 0, field, "must not be empty")
        violations.within_limit(len(request.history.items), MAX_INLINE_HISTORY, field, "items")
        items = request.history.items[:MAX_INLINE_HISTORY]
        indexes = []
        for number, item in enumerate(items):
            index = space.index.get(item.item_id)
            violations.require(index is not None, f"{field}[{number}].item_id", "unknown item")
            indexes.append(index or 0)
        for number, item in enumerate(items):
            # The shared rule: a caller's Timestamp may hold any int64.
            if item.HasField("event_time"):
                check_time(violations, item.event_time, f"{field}[{number}].event_time")
        order = np.arange(len(indexes))
        if items and all(item.HasField("event_time") for item in items):
            order = np.array(
                sorted(
                    order, key=lambda i: (items[i].event_time.seconds, items[i].event_time.nanos)
                ),
                dtype=np.int64,
            )
        history = np.array(indexes, dtype=np.int64)[order]
        types = np.array([item.type for item in items], np.int32)[order]
    excluded = request.filter.exclude_item_ids
    violations.within_limit(
        len(excluded), MAX_EXCLUDED_ITEMS, f"{prefix}filter.exclude_item_ids", "ids"
    )
    exclude = []
    for number, item_id in enumerate(excluded[:MAX_EXCLUDED_ITEMS]):
        index = space.index.get(item_id)
        violations.require(
            index is not None, f"{prefix}filter.exclude_item_ids[{number}]", "unknown item"
        )
        exclude.append(index or 0)
    known_topics = space.topic_code
    for name in ("include_topic_ids", "exclude_topic_ids"):
        topics = getattr(request.filter, name)
        violations.within_limit(len(topics), MAX_TOPICS, f"{prefix}filter.{name}", "topics")
        for number, topic in enumerate(topics[:MAX_TOPICS]):
            violations.require(
                topic in known_topics, f"{prefix}filter.{name}[{number}]", "unknown topic"
            )
    query = Query(
        history=history,
        event_types=types,
        k=k,
        diversity=diversity,
        exclude_seen=request.exclude_seen if request.HasField("exclude_seen") else True,
        exclude=np.array(exclude, dtype=np.int64),
        include_topics=[t for t in request.filter.include_topic_ids if t in known_topics],
        exclude_topics=[t for t in request.filter.exclude_topic_ids if t in known_topics],
    )
    return Subject(request.user_id, query, inline=subject == "history")


class RankingServicer(ranking_pb2_grpc.RankingServiceServicer):
    """Answers from the current model version, the catalog mirror and the interest service."""

    def __init__(
        self,
        settings: Settings,
        repository: ModelRepository,
        mirror: CatalogMirror,
        interest: interest_pb2_grpc.InterestServiceAsyncStub,
    ) -> None:
        self.settings = settings.recommend
        self.serving = settings.serving
        self.repository = repository
        self.mirror = mirror
        self.interest = interest
        self.batcher = Batcher(
            repository.backend.user_vectors,
            settings.serving.max_batch_size,
            settings.serving.batch_window_ms / 1000,
        )
        self.index_settings = settings.index
        self.recent_items = RecentItemsReader(interest, settings.recommend.history_events)
        self._space: ItemSpace | None = None
        self._space_key: tuple[int, int] = (-1, -1)
        self._building = asyncio.Lock()
        self.heavy_slots = asyncio.Semaphore(HEAVY_CONCURRENCY)
        self.heavy_waiting = 0
        # Served on the service's metrics port (GrpcService.collectors), not the global registry.
        self.encoder_breaker = CircuitBreaker(ENCODER_FAILURES_TO_OPEN, ENCODER_OPEN_S)
        self.encoder_errors = Counter(
            "evorec_ranking_encoder_errors",
            "Encoder failures that were not an outage, deadline or overload (bugs): each"
            " failed its call with INTERNAL.",
            registry=None,
        )

    def _current(self) -> tuple[ModelBundle, tuple[int, int]]:
        bundle = self.repository.current
        if bundle is None:
            raise FailedPrecondition("no model is loaded yet")
        return bundle, (bundle.version, self.mirror.generation)

    def space(self) -> ItemSpace:
        """The item space of the current version and catalog. `refresh_space` rebuilds it
        in the background when either changes (a large catalog's index takes minutes), and
        requests keep the previous space meanwhile, while its model version is still
        loaded; a request builds it only when there is none it can use."""
        bundle, key = self._current()
        if self._space is None or (
            key != self._space_key and self._space.bundle.version not in self.repository.bundles
        ):
            space = ItemSpace(bundle, self.mirror.items, self._space, self.index_settings)
            self._space, self._space_key = space, key
        return self._space

    async def refresh_space(self) -> None:
        """Builds the item space for the current version and catalog off the event loop
        (it is O(items), and its vector index is extended, or built for a new version),
        then switches to it. One build at a time, since a build may extend the current
        space's index in place."""
        async with self._building:
            bundle, key = self._current()
            if self._space is not None and key == self._space_key:
                return
            try:
                space = await asyncio.to_thread(
                    ItemSpace, bundle, dict(self.mirror.items), self._space, self.index_settings
                )
            except Exception:  # the next request builds it, and fails visibly if it must
                log.exception("cannot build the item space in the background")
                return
            if key == self._current()[1]:
                self._space, self._space_key = space, key

    async def Recommend(
        self, request: ranking_pb2.RecommendRequest, context: Any
    ) -> ranking_pb2.RecommendResponse:
        space = self.space()
        violations = Violations()
        subject = parse_request(request, space, self.settings, violations)
        violations.raise_if_any()
        return await self.answer(space, subject)

    async def RecommendBatch(
        self, request: ranking_pb2.RecommendBatchRequest, context: Any
    ) -> ranking_pb2.RecommendBatchResponse:
        space = self.space()
        violations = Violations()
        violations.within_limit(len(request.requests), MAX_BATCH, "requests", "requests")
        subjects = [
            parse_request(one, space, self.settings, violations, f"requests[{number}].")
            for number, one in enumerate(request.requests[:MAX_BATCH])
        ]
        violations.raise_if_any()
        heavy = [n for n, subject in enumerate(subjects) if _is_heavy(subject)]
        light = [n for n, subject in enumerate(subjects) if not _is_heavy(subject)]
        answered: list[Any] = await asyncio.gather(
            self.heavy_in_turn(space, [subjects[n] for n in heavy]),
            *(self.compute(space, subjects[n]) for n in light),
        )
        by_number = dict(zip(heavy, answered[0], strict=True))
        by_number.update(zip(light, answered[1:], strict=True))
        return ranking_pb2.RecommendBatchResponse(
            responses=[by_number[n] for n in range(len(subjects))]
        )

    async def ForecastInterests(
        self, request: ranking_pb2.ForecastInterestsRequest, context: Any
    ) -> ranking_pb2.ForecastInterestsResponse:
        """See evorec.ranking.forecast; the encoder's expected failure leaves only its method
        out (any other is INTERNAL, as for Recommend)."""
        space = self.space()
        violations = Violations()
        query = parse_forecast_request(request, space, violations)
        violations.raise_if_any()
        if not query.inline:
            query.history = await stored_history(
                self.interest, space, query.user_id, self.settings.history_events
            )
        vector, problem = await self.vector_or_problem(space, query.history)
        return forecast_response(space, query, vector, problem)

    async def history(self, space: ItemSpace, subject: Subject) -> set[int]:
        """Fills the subject's history from the interest service; returns the sources left
        without input (all personal ones when that service cannot answer)."""
        if subject.inline:
            return set()
        try:
            response = await self.recent_items.recent(
                subject.user_id, share_of_deadline(INTEREST_SHARE_OF_DEADLINE)
            )
        except grpc.aio.AioRpcError as error:
            log.warning("no history for the answer: InterestService %s", error.code().name)
            return set(PERSONAL_SOURCES)
        except TimeoutError:
            log.warning("no history for the answer: InterestService took its share of the deadline")
            return set(PERSONAL_SOURCES)
        # Oldest first; index 0 (the padding row) stands for an item this space does not know.
        found = np.array([space.index.get(i, 0) for i in response.item_ids], dtype=np.int64)[::-1]
        known = found > 0
        subject.query.history = found[known]
        subject.query.event_types = np.array(response.types, dtype=np.int32)[::-1][known]
        return set()

    async def user_vector(self, space: ItemSpace, history: np.ndarray) -> np.ndarray | None:
        """The encoder's user vector for the model's items among `history`; None when the
        history has none of them; raises when the encoder fails or runs out of time."""
        window = history[history <= space.n_model_items][-space.bundle.max_len :]
        if len(window) == 0:
            return None
        limit = share_of_deadline(ENCODER_SHARE_OF_DEADLINE, self.serving.timeout_s)
        if not self.encoder_breaker.allow():
            raise EncoderSkipped
        try:
            vector, version = await self.batcher.user_vector(
                window, space.bundle.version, limit, space.bundle.max_len
            )
        except Exception as error:
            self.encoder_breaker.record(False if is_expected_failure(error) else None)
            raise
        except BaseException:  # cancelled: says nothing of the encoder
            self.encoder_breaker.record(None)
            raise
        self.encoder_breaker.record(True)
        if version != space.bundle.version:
            raise RuntimeError(f"the encoder answered with version {version}, not the one asked")
        return vector

    async def vector_or_problem(
        self, space: ItemSpace, history: np.ndarray
    ) -> tuple[np.ndarray | None, str]:
        """The user vector, or None and why the encoder did not answer, when it failed in an
        expected way (down, out of time, overloaded, just failed: the caller answers
        without it). Any other error is a bug: counted, logged with the request id, raised
        (INTERNAL), never passed for an outage."""
        try:
            return await self.user_vector(space, history), ""
        except EncoderSkipped:
            log.debug("answering without the encoder: it failed just before")
            return None, "the encoder failed just before (circuit open)"
        except Exception as error:
            if not is_expected_failure(error):
                self.encoder_errors.inc()
                log.error(
                    "the encoder failed unexpectedly (request id %s): %s",
                    context.request_id.get(),
                    _describe(error),
                )
                raise
            log.warning("answering without the encoder: %s", _describe(error))
            return None, f"the encoder did not answer: {_describe(error)}"

    async def answer(self, space: ItemSpace, subject: Subject) -> ranking_pb2.RecommendResponse:
        """The response to one request; a heavy one waits for a heavy slot first."""
        if not _is_heavy(subject):
            return await self.compute(space, subject)
        async with self.heavy_turn(), self.heavy_slots:
            return await self.compute(space, subject)

    async def heavy_in_turn(
        self, space: ItemSpace, subjects: list[Subject]
    ) -> list[ranking_pb2.RecommendResponse]:
        """The heavy requests of one batch, one after another, as one waiting caller (each
        a waiting caller of its own, nine of them would have been refused on an idle
        server)."""
        answers: list[ranking_pb2.RecommendResponse] = []
        if subjects:
            async with self.heavy_turn():
                for subject in subjects:
                    async with self.heavy_slots:
                        answers.append(await self.compute(space, subject))
        return answers

    @asynccontextmanager
    async def heavy_turn(self) -> AsyncIterator[None]:
        """Counts one caller waiting with heavy requests; refuses it when HEAVY_WAITING
        already wait."""
        if self.heavy_waiting >= HEAVY_WAITING:
            raise ResourceExhausted(
                f"{HEAVY_WAITING} requests at the limits (large k, history or topic filter) "
                "are already waiting: retry later"
            )
        self.heavy_waiting += 1
        try:
            yield
        finally:
            self.heavy_waiting -= 1

    async def compute(self, space: ItemSpace, subject: Subject) -> ranking_pb2.RecommendResponse:
        degraded = await self.history(space, subject)
        vector = None
        if not degraded:
            vector, problem = await self.vector_or_problem(space, subject.query.history)
            if problem:
                degraded.add(ENCODER)
        if self.mirror.stale and len(subject.query.history):
            degraded.add(TEXT_NEIGHBOURS)

        def respond() -> ranking_pb2.RecommendResponse:
            answer = recommend(space, subject.query, vector, self.settings)
            return self.response(space, answer, vector is not None, degraded)

        if len(space) >= OFFLOAD_ITEMS or subject.query.k >= OFFLOAD_K:
            return await asyncio.to_thread(respond)
        return respond()

    def response(
        self, space: ItemSpace, answer: Answer, encoded: bool, degraded: set[int]
    ) -> ranking_pb2.RecommendResponse:
        return ranking_pb2.RecommendResponse(
            recommendations=[
                ranking_pb2.Recommendation(
                    item_id=space.ids[item.index],
                    score=item.score,
                    sources=item.sources,  # type: ignore[arg-type]
                    reason=item.reason,
                    topic_id=space.topic_of(item.index),
                    title=space.titles[item.index],
                )
                for item in answer.items
            ],
            model_version=str(space.bundle.version) if encoded else "",
            sources_used=answer.sources_used,  # type: ignore[arg-type]
            degraded_sources=sorted(degraded),  # type: ignore[arg-type]
            cold_start=answer.cold_start and not degraded,
        )


def share_of_deadline(share: float, cap: float | None = None) -> float | None:
    """Seconds a dependency may take: `share` of what is left of the inbound deadline, at
    most `cap`; `cap` when the caller set no deadline (None: the client's default)."""
    remaining = context.remaining_seconds()
    if remaining is None:
        return cap
    limit = max(0.0, remaining * share)
    return limit if cap is None else min(cap, limit)


def _is_heavy(subject: Subject) -> bool:
    """A request at the limits: large k, a long inline history or a large topic filter."""
    query = subject.query
    return (
        query.k >= OFFLOAD_K
        or (subject.inline and len(query.history) >= HEAVY_HISTORY)
        or len(query.include_topics) + len(query.exclude_topics) >= HEAVY_TOPICS
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"


def backend_for(settings: Settings) -> EncoderBackend:
    if settings.serving.backend == "tf_serving":
        return TFServingBackend(settings.serving, settings.client, settings.server, settings.tls)
    return InProcessBackend(settings.serving.signature_name, settings.serving.max_batch_size)


def create(settings: Settings) -> GrpcService:
    """The RankingService: serves once a model version is loaded from the base path, then
    follows new versions and catalog changes in the background."""
    interest = interest_client(settings)
    embedding = embedding_client(settings)
    model_dir = settings.serving.model_dir(settings.data_dir)
    repository = ModelRepository(model_dir, backend_for(settings), settings.serving.keep_versions)
    mirror = CatalogMirror(embedding.stub, settings.recommend.catalog_stale_after_s)
    servicer = RankingServicer(settings, repository, mirror, interest.stub)
    background = BackgroundTasks()

    async def start() -> None:
        # One request's products over the item table are small; BLAS threads for them would
        # spin against TensorFlow's and the event loop for the same cores (under load, a
        # profile showed one matrix-vector product as the service's largest single cost).
        threadpool_limits(limits=1, user_api="blas")
        while not await repository.refresh() and repository.current is None:
            log.info("waiting for a model version under %s", model_dir)
            await asyncio.sleep(settings.serving.poll_interval_s)
        try:
            await mirror.sync()
        except grpc.aio.AioRpcError as error:
            log.warning("starting without the catalog's new items: %s", _describe(error))
        await servicer.refresh_space()
        background.start(
            repository.watch(settings.serving.poll_interval_s, servicer.refresh_space),
            "model versions",
        )
        background.start(
            mirror.watch(settings.recommend.catalog_poll_interval_s, servicer.refresh_space),
            "catalog mirror",
        )

    async def stop() -> None:
        await background.stop()
        await servicer.batcher.close()
        await servicer.recent_items.close()
        await repository.backend.close()
        await interest.close()
        await embedding.close()

    return GrpcService(
        name=ranking_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name,
        register=lambda server: ranking_pb2_grpc.add_RankingServiceServicer_to_server(
            servicer, server
        ),
        start=start,
        stop=stop,
        collectors=(servicer.encoder_errors,),
    )
