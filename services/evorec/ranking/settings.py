"""How the ranking service builds an answer (`EVOREC_RECOMMEND__...`)."""

from __future__ import annotations

from pydantic import Field

from evorec.platform.section import Section


class RecommendSettings(Section):
    """How the ranking service builds an answer."""

    default_k: int = Field(default=10, ge=1, le=1000)
    # Default strength of the MMR diversity re-ranking, 0 (pure relevance) to 1.
    diversity: float = Field(default=0.2, ge=0, le=1)
    # The newest this many events of a user are read: all count as seen, the newest
    # max_len (the model's window) go to the encoder.
    history_events: int = Field(default=1000, ge=1, le=1000)
    # Each candidate source proposes at most this many items.
    candidates_per_source: int = Field(default=200, ge=10, le=100_000)
    # Weights of the sources in the blend (weighted reciprocal-rank fusion).
    weight_encoder: float = Field(default=1.0, ge=0)
    weight_item_similarity: float = Field(default=0.3, ge=0)
    weight_markov: float = Field(default=0.3, ge=0)
    weight_text_neighbours: float = Field(default=0.3, ge=0)
    weight_popularity: float = Field(default=0.1, ge=0)
    # Lift of proposed items in the topics the user's own topic chain forecasts (0: off;
    # the default is the measured best, BENCHMARKS.md "Ranking that uses the forecast").
    weight_forecast: float = Field(default=0.0, ge=0)
    # How often the catalog's new and changed items are fetched from the embedding service.
    catalog_poll_interval_s: float = Field(default=2.0, gt=0, le=3600)
    # Text neighbours are reported degraded after this long without reaching it.
    catalog_stale_after_s: float = Field(default=30.0, gt=0)
