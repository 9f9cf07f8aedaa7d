"""The interest service's background work: retention, and topics for events stored while
the catalog could not be asked or did not know their item."""

from __future__ import annotations

import asyncio
import logging
import time

from evorec.interest.settings import InterestStateSettings
from evorec.interest.store import EventStore
from evorec.interest.topics import TopicResolver
from evorec.interest.writer import GroupWriter
from evorec.platform.background import BackgroundTasks, every
from evorec.platform.validation import DAY

log = logging.getLogger("evorec.interest")
BACKFILL_ITEMS = 1_000  # items looked up per back-fill step


class Maintenance:
    """Runs retention and the topic back-fill through the writer, between ingest batches."""

    def __init__(
        self,
        store: EventStore,
        writer: GroupWriter,
        resolver: TopicResolver,
        config: InterestStateSettings,
    ) -> None:
        self.store = store
        self.writer = writer
        self.resolver = resolver
        self.config = config
        self.tasks = BackgroundTasks()
        # The back-fill's place in its walk over the items without a topic (see `backfill`).
        self.backfill_after = ""

    def start(self) -> None:
        self.tasks.start(
            every(self.config.retention_interval_s, self.enforce_retention, log, "retention"),
            "retention",
        )
        self.tasks.start(
            every(
                self.config.topic_backfill_interval_s, self.backfill_topics, log, "topic back-fill"
            ),
            "topic back-fill",
        )

    async def stop(self) -> None:
        await self.tasks.stop()

    async def enforce_retention(self) -> None:
        """Drops what retention says, in small steps, until nothing is left to drop."""
        max_age = self.config.retention_max_age_days
        oldest = time.time() - max_age * DAY if max_age else None
        while await self.writer.run(
            self.store.enforce_retention, self.config.retention_max_events, oldest
        ):
            pass

    async def backfill_topics(self) -> None:
        """Gives events stored without a topic the topic their item has now; items that the
        catalog did not know are asked again once the resolver's memory of that expires."""
        items = await asyncio.to_thread(
            self.store.unresolved_items, BACKFILL_ITEMS, self.backfill_after
        )
        self.backfill_after = items[-1] if len(items) == BACKFILL_ITEMS else ""
        found = await self.resolver.resolve(items) if items else {}
        topics = {item: topic for item, (topic, _) in found.items() if topic is not None}
        if topics:
            updated = await self.writer.run(self.store.assign_topics, topics)
            log.info("topics resolved later for %d events", updated)
