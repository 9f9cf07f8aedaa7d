"""The interest service's settings (`EVOREC_INTEREST_STATE__...`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from evorec.platform.section import Section


class InterestStateSettings(Section):
    """The interest service's event store and profiles."""

    # full: SQLite fsyncs every commit, so an acknowledged event survives kill -9 and a power
    # cut; normal: it survives kill -9, and a power cut may lose the last commits (WAL mode).
    durability: Literal["full", "normal"] = "full"
    # Per user, only the newest this many events are kept...
    retention_max_events: int = Field(default=10_000, ge=1, le=10_000_000)
    # ...and, when set, only those younger than this many days.
    retention_max_age_days: float | None = Field(default=None, gt=0)
    # How often retention runs (in small steps between ingest batches).
    retention_interval_s: float = Field(default=5.0, gt=0)
    # Half-life of the time decay of the "current" interest distribution.
    half_life_days: float = Field(default=14.0, gt=0)
    # The short-term distribution is over this many most recent events.
    short_term_events: int = Field(default=20, ge=1, le=1000)
    # How often events stored without a topic (catalog unreachable) are looked up again.
    topic_backfill_interval_s: float = Field(default=30.0, gt=0)
    # Concurrent ingest calls are committed together, up to this many events at once.
    max_group_events: int = Field(default=20_000, ge=1, le=1_000_000)
