"""InterestService: durable ingest (batch and stream), paged history, interest profiles,
deletion of a user, and the export of the event log for training."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from evorec.interest.intake import new_events
from evorec.interest.maintenance import Maintenance
from evorec.interest.profile import build_profile
from evorec.interest.records import StoredRow
from evorec.interest.settings import InterestStateSettings
from evorec.interest.sqlite_memory import sqlite_heap_gauge
from evorec.interest.store import EventStore
from evorec.interest.topics import TopicResolver
from evorec.interest.writer import GroupWriter
from evorec.platform.clients import embedding_client
from evorec.platform.config import ServerSettings, Settings
from evorec.platform.errors import FieldViolation, NotFound, ResourceExhausted, Violations
from evorec.platform.runs import runs_within
from evorec.platform.server import GrpcService
from evorec.platform.validation import (
    DAY,
    check_id,
    duration_seconds,
    timestamp,
    timestamp_seconds,
)
from evorec.topic_distributions import Distribution
from evorec.v1 import common_pb2, interest_pb2, interest_pb2_grpc

log = logging.getLogger("evorec.interest")
MAX_BATCH = 10_000
STREAM_IN_FLIGHT = 4
MAX_PAGE = 1_000
DEFAULT_PAGE = 100
DEFAULT_RECENT = 200
# Users per GetRecentItems call (`user_ids`): ranking's batches are at most this large.
MAX_RECENT_USERS = 256
MAX_HORIZON = 100
DEFAULT_HORIZON = 10
MAX_EXPORT_PAGE = 10_000
DEFAULT_EXPORT_PAGE = 1_000


def encode_token(position: tuple[float, int]) -> str:
    return base64.urlsafe_b64encode(f"{position[0]!r}/{position[1]}".encode()).decode()


def decode_token(token: str) -> tuple[float, int] | None:
    """The position a page token holds; None for anything encode_token cannot have made
    (a time that is not finite, a sequence number beyond SQLite's int64 included)."""
    try:
        time_text, seq_text = base64.urlsafe_b64decode(token.encode()).decode().split("/")
        position = float(time_text), int(seq_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not math.isfinite(position[0]) or not 0 <= position[1] < 2**63:
        return None
    return position


class InterestServicer(interest_pb2_grpc.InterestServiceServicer):
    def __init__(
        self,
        store: EventStore,
        writer: GroupWriter,
        resolver: TopicResolver,
        config: InterestStateSettings,
        server: ServerSettings,
    ) -> None:
        self.store = store
        self.writer = writer
        self.resolver = resolver
        self.config = config
        # The largest answer the server sends (gRPC fails a larger one), and the bytes of
        # events a page or an export message holds: half of it, which leaves the rest of
        # the message ample room.
        self.max_send_bytes = server.max_send_message_bytes
        self.page_bytes = server.max_send_message_bytes // 2

    async def ingest(
        self, events: Sequence[common_pb2.Event], offset: int, summary: interest_pb2.IngestSummary
    ) -> None:
        """Validates, resolves topics, stores; adds the outcome to `summary`. Event i of
        `events` is number offset + i in the caller's numbering."""
        new = await new_events(events, offset, self.resolver, summary, time.time())
        unknown = {e.index for e in new if e.unknown_item}
        accepted, duplicates = await self.writer.write(new)
        summary.accepted_count += len(accepted)
        summary.duplicate_count += len(duplicates)
        summary.rejected_count = len(summary.rejected)
        summary.unknown_item_count += sum(1 for i in accepted if i in unknown)

    async def IngestEvents(
        self, request: interest_pb2.IngestEventsRequest, context: Any
    ) -> interest_pb2.IngestEventsResponse:
        violations = Violations()
        violations.within_limit(len(request.events), MAX_BATCH, "events", "events")
        violations.raise_if_any()
        summary = interest_pb2.IngestSummary()
        await self.ingest(request.events, 0, summary)
        return interest_pb2.IngestEventsResponse(summary=summary)

    async def StreamEvents(
        self, request_iterator: AsyncIterator[interest_pb2.StreamEventsRequest], context: Any
    ) -> interest_pb2.StreamEventsResponse:
        summary = interest_pb2.IngestSummary()
        offset = 0
        # Messages are stored while the next ones arrive (a few in flight, committed together
        # by the writer); once handed to the writer, a message is stored even if the stream
        # then breaks.
        in_flight: list[asyncio.Task[None]] = []
        try:
            async for message in request_iterator:
                violations = Violations()
                violations.within_limit(
                    len(message.events), MAX_BATCH, "events", "events per message"
                )
                violations.raise_if_any()
                in_flight.append(asyncio.create_task(self.ingest(message.events, offset, summary)))
                offset += len(message.events)
                if len(in_flight) >= STREAM_IN_FLIGHT:
                    await in_flight.pop(0)
        finally:
            await asyncio.gather(*in_flight)
        return interest_pb2.StreamEventsResponse(summary=summary)

    async def GetUserHistory(
        self, request: interest_pb2.GetUserHistoryRequest, context: Any
    ) -> interest_pb2.GetUserHistoryResponse:
        violations = Violations()
        check_id(violations, request.user_id, "user_id")
        size = request.page_size or DEFAULT_PAGE
        violations.require(1 <= size <= MAX_PAGE, "page_size", f"must be 1 to {MAX_PAGE:,}")
        before = decode_token(request.page_token) if request.page_token else None
        violations.require(
            not request.page_token or before is not None,
            "page_token",
            "not a token this service issued",
        )
        start = timestamp_seconds(request.start_time) if request.HasField("start_time") else None
        end = timestamp_seconds(request.end_time) if request.HasField("end_time") else None
        violations.require(
            not request.HasField("start_time") or start is not None, "start_time", "out of range"
        )
        violations.require(
            not request.HasField("end_time") or end is not None, "end_time", "out of range"
        )
        violations.raise_if_any()
        rows = await asyncio.to_thread(
            self.store.history, request.user_id, size + 1, start, end, before
        )
        # At most `size` events, fewer where their texts would make the page too large.
        events = next(
            runs_within(map(stored_event, rows[:size]), _framed_size, self.page_bytes), []
        )
        page, more = rows[: len(events)], len(rows) > len(events)
        return interest_pb2.GetUserHistoryResponse(
            events=events,
            next_page_token=encode_token((page[-1].event_time, page[-1].seq)) if more else "",
        )

    async def GetRecentItems(
        self, request: interest_pb2.GetRecentItemsRequest, context: Any
    ) -> interest_pb2.GetRecentItemsResponse:
        violations = Violations()
        limit = request.limit or DEFAULT_RECENT
        violations.require(1 <= limit <= MAX_PAGE, "limit", f"must be 1 to {MAX_PAGE:,}")
        if not request.user_ids:
            check_id(violations, request.user_id, "user_id")
            violations.raise_if_any()
            items, types = await asyncio.to_thread(self.store.recent_items, request.user_id, limit)
            response = interest_pb2.GetRecentItemsResponse(item_ids=items, types=types)  # type: ignore[arg-type]
            return self.within_send_limit(response, ["limit"])
        violations.require(not request.user_id, "user_id", "leave empty when user_ids is set")
        violations.within_limit(len(request.user_ids), MAX_RECENT_USERS, "user_ids", "users")
        users = request.user_ids[:MAX_RECENT_USERS]
        for number, user_id in enumerate(users):
            check_id(violations, user_id, f"user_ids[{number}]")
        violations.raise_if_any()
        read = await asyncio.to_thread(
            lambda: [self.store.recent_items(user_id, limit) for user_id in users]
        )
        response = interest_pb2.GetRecentItemsResponse(
            users=[
                interest_pb2.RecentItems(item_ids=items, types=types)  # type: ignore[arg-type]
                for items, types in read
            ]
        )
        return self.within_send_limit(response, ["user_ids", "limit"])

    def within_send_limit(
        self, response: interest_pb2.GetRecentItemsResponse, fields: list[str]
    ) -> interest_pb2.GetRecentItemsResponse:
        """`response`, when it fits in the server's largest message; else RESOURCE_EXHAUSTED
        naming `fields`, those a caller can lower. Items are never left out to make it fit:
        a caller (ranking) takes them for all the items the user has seen, and a shorter
        list would go unnoticed."""
        size = response.ByteSize()
        if size > self.max_send_bytes:
            description = (
                f"the answer would be {size:,} bytes, over the server's largest message of"
                f" {self.max_send_bytes:,} (server.max_send_message_bytes): ask for fewer"
                " users or a smaller limit"
            )
            raise ResourceExhausted(violations=[FieldViolation(f, description) for f in fields])
        return response

    async def GetInterestProfile(
        self, request: interest_pb2.GetInterestProfileRequest, context: Any
    ) -> interest_pb2.GetInterestProfileResponse:
        violations = Violations()
        check_id(violations, request.user_id, "user_id")
        horizon = request.horizon or DEFAULT_HORIZON
        violations.require(1 <= horizon <= MAX_HORIZON, "horizon", f"must be 1 to {MAX_HORIZON}")
        half_life = (
            duration_seconds(request.half_life)
            if request.HasField("half_life")
            else self.config.half_life_days * DAY
        )
        violations.require(
            half_life is not None and 0 < half_life <= 3650 * DAY,
            "half_life",
            "must be positive, at most 10 years",
        )
        bucket = (
            duration_seconds(request.timeline_bucket)
            if request.HasField("timeline_bucket")
            else None
        )
        violations.require(
            not request.HasField("timeline_bucket") or (bucket is not None and bucket >= DAY),
            "timeline_bucket",
            "must be at least one day",
        )
        violations.raise_if_any()
        state = await asyncio.to_thread(
            self.store.user_state, request.user_id, self.config.short_term_events
        )
        if state is None:
            raise NotFound("user", request.user_id)
        profile = build_profile(state, time.time(), half_life or 0.0, horizon, bucket)
        distribution = self.distribution
        return interest_pb2.GetInterestProfileResponse(
            profile=interest_pb2.InterestProfile(
                user_id=request.user_id,
                event_count=profile.event_count,
                last_event_time=timestamp(profile.last_event_time),
                current=await distribution(profile.current),
                long_term=await distribution(profile.long_term),
                short_term=await distribution(profile.short_term),
                drift_score=profile.drift,
                predictions=[
                    interest_pb2.TopicPrediction(
                        method=interest_pb2.PREDICTION_METHOD_LAST_WINDOW,
                        distribution=await distribution(profile.last_window),
                    ),
                    interest_pb2.TopicPrediction(
                        method=interest_pb2.PREDICTION_METHOD_MARKOV,
                        distribution=await distribution(profile.markov),
                    ),
                ],
                rising=[
                    interest_pb2.TopicTrend(
                        topic_id=t, label=await self.resolver.label(t), change=c
                    )
                    for t, c in profile.rising
                ],
                falling=[
                    interest_pb2.TopicTrend(
                        topic_id=t, label=await self.resolver.label(t), change=c
                    )
                    for t, c in profile.falling
                ],
                timeline=[
                    interest_pb2.TimelineBucket(
                        start_time=timestamp(b.start),
                        end_time=timestamp(b.end),
                        event_count=b.event_count,
                        distribution=await distribution(b.distribution),
                    )
                    for b in profile.timeline
                ],
            )
        )

    async def distribution(self, weights: Distribution) -> common_pb2.TopicDistribution:
        ordered = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))
        return common_pb2.TopicDistribution(
            weights=[
                common_pb2.TopicWeight(topic_id=t, label=await self.resolver.label(t), weight=w)
                for t, w in ordered
            ]
        )

    async def DeleteUser(
        self, request: interest_pb2.DeleteUserRequest, context: Any
    ) -> interest_pb2.DeleteUserResponse:
        violations = Violations()
        # An id with U+0000, refused since, may name a user stored before: they can go.
        check_id(violations, request.user_id, "user_id", nul_allowed=True)
        violations.raise_if_any()
        events, state = await self.writer.run(self.store.delete_user, request.user_id)
        log.info("deleted user: %d events, %d state rows", events, state)
        return interest_pb2.DeleteUserResponse(
            deleted_event_count=events, deleted_state_count=state
        )

    async def ExportEvents(
        self, request: interest_pb2.ExportEventsRequest, context: Any
    ) -> AsyncIterator[interest_pb2.ExportEventsResponse]:
        violations = Violations()
        size = request.page_size or DEFAULT_EXPORT_PAGE
        violations.require(
            1 <= size <= MAX_EXPORT_PAGE, "page_size", f"must be 1 to {MAX_EXPORT_PAGE:,}"
        )
        violations.require(request.after_watermark >= 0, "after_watermark", "must not be negative")
        violations.raise_if_any()
        watermark = await asyncio.to_thread(self.store.log_position)
        after: tuple[float, int] | None = None
        exported = 0
        while True:
            rows = await asyncio.to_thread(
                self.store.export_page, request.after_watermark, watermark, size, after
            )
            if not rows and after is None:  # nothing to export: one message says the watermark
                yield interest_pb2.ExportEventsResponse(watermark=watermark)
            # A page whose texts would make one message too large goes in several.
            for events in runs_within(map(stored_event, rows), _framed_size, self.page_bytes):
                yield interest_pb2.ExportEventsResponse(events=events, watermark=watermark)
            exported += len(rows)
            if len(rows) < size:
                break
            after = (rows[-1].event_time, rows[-1].seq)
        log.info("exported %d events up to watermark %d", exported, watermark)


def _framed_size(event: interest_pb2.StoredEvent) -> int:
    """The bytes an event takes in a message's repeated field: its own size, and at most 6 of
    tag and length."""
    return event.ByteSize() + 6


def stored_event(row: StoredRow) -> interest_pb2.StoredEvent:
    return interest_pb2.StoredEvent(
        event=common_pb2.Event(
            event_id=row.event_id,
            user_id=row.user_id,
            item_id=row.item_id,
            type=row.event_type,  # type: ignore[arg-type]
            value=row.value,
            text=row.text,
            event_time=timestamp(row.event_time),
        ),
        ingest_time=timestamp(row.ingest_time),
        unknown_item=row.unknown_item,
    )


def create(settings: Settings) -> GrpcService:
    """The InterestService over `<data_dir>/interest/events.sqlite`; its answers are sized to
    the server's largest message (`settings.server`)."""
    config = settings.interest_state
    client = embedding_client(settings)
    store = EventStore(settings.data_dir / "interest" / "events.sqlite", config.durability)
    writer = GroupWriter(store, config.max_group_events)
    servicer = InterestServicer(store, writer, TopicResolver(client.stub), config, settings.server)
    maintenance = Maintenance(store, writer, servicer.resolver, config)

    async def start() -> None:
        writer.start()
        maintenance.start()

    async def stop() -> None:
        await maintenance.stop()
        await writer.stop()
        await client.close()
        store.close()

    return GrpcService(
        name=interest_pb2.DESCRIPTOR.services_by_name["InterestService"].full_name,
        register=lambda server: interest_pb2_grpc.add_InterestServiceServicer_to_server(
            servicer, server
        ),
        start=start,
        stop=stop,
        collectors=tuple(g for g in [sqlite_heap_gauge()] if g is not None),
    )
