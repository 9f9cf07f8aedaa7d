"""A user's interest profile, computed from the store's derived state (no history scan).

- current: the topic distribution of all events, each weighted by 2^(-age / half-life), age
  counted in whole days (the store keeps per-day counts);
- long-term: of all retained events, unweighted; short-term: of the newest N events;
- drift: the Jensen-Shannon divergence (base 2, so in [0, 1]) between short- and long-term;
- predicted next-N distributions: the last window repeated (the short-term distribution),
  and a first-order Markov chain over topics, P_ij = n_ij / n_i, started from the last
  event's topic and averaged over the next N steps (a topic never left falls back to the
  long-term distribution as its row);
- rising and falling topics: short-term minus long-term weight;
- a timeline: the distribution per time bucket, oldest first.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from evorec.interest.records import UserState
from evorec.platform.validation import DAY
from evorec.topic_distributions import Distribution, js_divergence, markov_prediction, normalized

TREND_THRESHOLD = 0.01
MAX_TRENDS = 5
TIMELINE_BUCKETS = 20


def decayed(days: Sequence[tuple[int, str, int]], now: float, half_life_s: float) -> Distribution:
    """Each day's counts weighted by 2^(-age / half-life), normalized. Ages are measured
    from the newest day's rather than from `now`: that multiplies every weight by one
    factor, which normalizing cancels, and keeps the newest day's weight at 1. Measured from
    `now`, every weight underflows to 0.0 once all events are many half-lives old
    (2^-1100), and `current` came back empty beside a full `long_term`."""
    if not days:
        return {}
    newest_age = max(0.0, now - (max(day for day, _, _ in days) + 0.5) * DAY)
    weights: dict[str, float] = defaultdict(float)
    for day, topic, count in days:
        age = max(0.0, now - (day + 0.5) * DAY) - newest_age
        weights[topic] += count * 2 ** (-age / half_life_s)
    return normalized(weights)


@dataclass
class TimelineBucket:
    start: float
    end: float
    event_count: int
    distribution: Distribution


def timeline(days: list[tuple[int, str, int]], bucket_s: float | None) -> list[TimelineBucket]:
    """Per-bucket distributions from the first to the last active day; buckets are whole
    days wide (about TIMELINE_BUCKETS of them when `bucket_s` is None)."""
    if not days:
        return []
    first, last = days[0][0], days[-1][0]
    span = last - first + 1
    width = (
        max(1, round(bucket_s / DAY)) if bucket_s else max(1, math.ceil(span / TIMELINE_BUCKETS))
    )
    counts: list[Counter[str]] = [Counter() for _ in range(math.ceil(span / width))]
    for day, topic, count in days:
        counts[(day - first) // width][topic] += count
    return [
        TimelineBucket(
            start=(first + i * width) * DAY,
            end=(first + (i + 1) * width) * DAY,
            event_count=sum(c.values()),
            distribution=normalized(c),
        )
        for i, c in enumerate(counts)
    ]


@dataclass
class Profile:
    event_count: int
    last_event_time: float
    current: Distribution
    long_term: Distribution
    short_term: Distribution
    drift: float
    last_window: Distribution
    markov: Distribution
    rising: list[tuple[str, float]]
    falling: list[tuple[str, float]]
    timeline: list[TimelineBucket]


def build_profile(
    state: UserState, now: float, half_life_s: float, horizon: int, bucket_s: float | None
) -> Profile:
    long_term = normalized(state.topic_counts)
    short_term = normalized(Counter(state.recent_topics))
    changes = {
        t: short_term.get(t, 0.0) - long_term.get(t, 0.0)
        for t in long_term.keys() | short_term.keys()
    }
    rising = sorted(
        ((t, c) for t, c in changes.items() if c > TREND_THRESHOLD), key=lambda x: (-x[1], x[0])
    )
    falling = sorted(
        ((t, c) for t, c in changes.items() if c < -TREND_THRESHOLD), key=lambda x: (x[1], x[0])
    )
    return Profile(
        event_count=state.event_count,
        last_event_time=state.last_time,
        current=decayed(state.days, now, half_life_s),
        long_term=long_term,
        short_term=short_term,
        drift=js_divergence(short_term, long_term),
        last_window=short_term,
        markov=markov_prediction(state.transitions, state.last_topic, long_term, horizon),
        rising=rising[:MAX_TRENDS],
        falling=falling[:MAX_TRENDS],
        timeline=timeline(state.days, bucket_s),
    )
