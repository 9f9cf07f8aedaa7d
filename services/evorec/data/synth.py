"""The synthetic drift simulator: users whose interests move, with the truth kept.

Each of `topics` topics has its own vocabulary of generated words; each item belongs to one
topic, has a popularity (Zipf within its topic) and a title and description drawn mostly from
its topic's words. Each user has a preference over topics that changes along their history in
one of four ways: `stable`; `gradual` drift from one preference to another; a `sudden` switch
at a random point; `periodic` alternation between two interests. Every event draws a topic
from the user's current preference, then an item of that topic by popularity. Some events are
ratings (higher when the topic is preferred) and some reviews with text from the topic's words.

The truth is written beside the data: every item's topic, every user's pattern, and the
preference in force at every event. Small and quick by default (the demo and the tests use
it); `users` and `events_per_user` scale it to millions of events.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PATTERNS = ("stable", "gradual", "sudden", "periodic")
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class SimulatorConfig:
    """Size and shape of a synthetic dataset."""

    users: int = 200
    items: int = 400
    topics: int = 8
    events_per_user: int = 50
    words_per_topic: int = 40
    common_words: int = 60
    # Share of a text's words drawn from the common vocabulary rather than the topic's.
    common_word_share: float = 0.3
    rating_share: float = 0.3
    review_share: float = 0.05
    # Concentration of a user's preference: small values give one or two strong interests.
    preference_concentration: float = 0.3
    periodic_period: int = 16
    mean_gap_s: float = 6 * 3600.0
    start_time: float = 1_600_000_000.0
    seed: int = 0


@dataclass
class SyntheticDataset:
    """The simulated data (generic reader's layout) and its ground truth."""

    events: pd.DataFrame
    items: pd.DataFrame
    topic_labels: list[str]
    topic_words: list[list[str]]  # each topic's own vocabulary, most frequent first
    item_topics: np.ndarray
    users: pd.DataFrame
    preferences: np.ndarray  # one row per event: the preference in force, over topics

    def write(self, folder: Path, config: SimulatorConfig) -> None:
        """Writes events.csv and items.csv (read by `evorec data prepare`) and truth/."""
        truth = folder / "truth"
        truth.mkdir(parents=True, exist_ok=True)
        self.events.to_csv(folder / "events.csv", index=False)
        self.items.to_csv(folder / "items.csv", index=False)
        pd.DataFrame(
            {
                "item_id": self.items["item_id"],
                "topic": self.item_topics,
                "topic_label": [self.topic_labels[t] for t in self.item_topics],
            }
        ).to_csv(truth / "items.csv", index=False)
        self.users.to_csv(truth / "users.csv", index=False)
        (truth / "topics.json").write_text(
            json.dumps(
                [
                    {"label": label, "words": words}
                    for label, words in zip(self.topic_labels, self.topic_words, strict=True)
                ],
                indent=1,
            )
        )
        preferences = pd.DataFrame(
            self.preferences.astype(np.float32),
            columns=[f"topic_{t}" for t in range(self.preferences.shape[1])],
        )
        preferences.insert(0, "event_id", self.events["event_id"].to_numpy())
        preferences.to_parquet(truth / "preferences.parquet", index=False)
        summary = {
            "config": asdict(config),
            "events": len(self.events),
            "users": len(self.users),
            "items": len(self.items),
            "topic_labels": self.topic_labels,
            "patterns": {k: int(v) for k, v in self.users["pattern"].value_counts().items()},
        }
        (folder / "synth.json").write_text(json.dumps(summary, indent=2) + "\n")


def _words(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    """`count` new pronounceable words of two or three syllables."""
    words: list[str] = []
    while len(words) < count:
        syllables = rng.integers(2, 4)
        word = "".join(
            _CONSONANTS[rng.integers(len(_CONSONANTS))] + _VOWELS[rng.integers(len(_VOWELS))]
            for _ in range(syllables)
        )
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


def _zipf_cdf(count: int, exponent: float = 1.0) -> np.ndarray:
    weights: np.ndarray = 1.0 / np.arange(1, count + 1) ** exponent
    cdf: np.ndarray = np.cumsum(weights) / weights.sum()
    return cdf


def _draw(cdf: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size)), len(cdf) - 1)


class _TextMaker:
    """Texts of a topic: its own words by Zipf frequency, mixed with common words."""

    def __init__(self, rng: np.random.Generator, config: SimulatorConfig) -> None:
        taken: set[str] = set()
        self.rng = rng
        self.share = config.common_word_share
        self.topic_words = [
            _words(rng, config.words_per_topic, taken) for _ in range(config.topics)
        ]
        self.common = _words(rng, config.common_words, taken)
        self.topic_cdf = _zipf_cdf(config.words_per_topic)
        self.common_cdf = _zipf_cdf(config.common_words)

    def text(self, topic: int, length: int) -> str:
        common = self.rng.random(length) < self.share
        own = _draw(self.topic_cdf, self.rng, length)
        shared = _draw(self.common_cdf, self.rng, length)
        words = [
            self.common[s] if c else self.topic_words[topic][o]
            for c, o, s in zip(common, own, shared, strict=True)
        ]
        return " ".join(words)


def simulate(config: SimulatorConfig | None = None) -> SyntheticDataset:
    """Draws a dataset; the same config (seed included) always gives the same data."""
    config = config or SimulatorConfig()
    rng = np.random.default_rng(config.seed)
    texts = _TextMaker(rng, config)
    topic_labels = [" / ".join(words[:3]) for words in texts.topic_words]

    item_topics = rng.permutation(np.arange(config.items) % config.topics)
    item_ids = np.array([f"i{n}" for n in range(config.items)])
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": [texts.text(t, 2).title() for t in item_topics],
            "text": [texts.text(t, int(rng.integers(12, 30))) for t in item_topics],
        }
    )
    # Within a topic, items are ranked by a random popularity order (Zipf).
    by_topic = [rng.permutation(np.flatnonzero(item_topics == t)) for t in range(config.topics)]
    topic_item_cdf = [_zipf_cdf(len(members), 0.8) for members in by_topic]

    users = config.users
    alpha = np.full(config.topics, config.preference_concentration)
    start_preference = rng.dirichlet(alpha, size=users)
    end_preference = rng.dirichlet(alpha, size=users)
    patterns = rng.integers(len(PATTERNS), size=users)
    switch_at = rng.uniform(0.3, 0.7, size=users)
    lengths = np.maximum(5, rng.poisson(config.events_per_user, size=users))

    user_of_event = np.repeat(np.arange(users), lengths)
    position = np.arange(len(user_of_event)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    progress = position / np.maximum(1, np.repeat(lengths, lengths) - 1)
    pattern = patterns[user_of_event]
    mix = np.select(
        [pattern == 0, pattern == 1, pattern == 2, pattern == 3],
        [
            np.zeros_like(progress),
            progress,
            (progress >= switch_at[user_of_event]).astype(float),
            ((position // (config.periodic_period // 2)) % 2).astype(float),
        ],
    )
    preference = (1 - mix)[:, None] * start_preference[user_of_event] + mix[
        :, None
    ] * end_preference[user_of_event]
    topic = (rng.random(len(preference))[:, None] > np.cumsum(preference, axis=1)).sum(axis=1)
    topic = np.minimum(topic, config.topics - 1)
    item = np.empty(len(topic), dtype=np.int64)
    for t in range(config.topics):
        where = np.flatnonzero(topic == t)
        item[where] = by_topic[t][_draw(topic_item_cdf[t], rng, len(where))]

    kind_draw = rng.random(len(topic))
    kinds = np.where(
        kind_draw < config.review_share,
        "review",
        np.where(kind_draw < config.review_share + config.rating_share, "rating", "view"),
    )
    liked = preference[np.arange(len(topic)), topic] * config.topics
    rating = np.clip(np.round(2.5 + liked + rng.normal(0, 0.7, len(topic))), 1, 5)
    value = np.where(kinds == "view", np.nan, rating)
    text = [
        texts.text(int(t), 8) if k == "review" else "" for t, k in zip(topic, kinds, strict=True)
    ]
    start = config.start_time + rng.uniform(0, 30 * 86_400, size=users)
    gaps = rng.exponential(config.mean_gap_s, size=len(topic))
    gaps[position == 0] = 0
    timestamp = np.round(start[user_of_event] + _cumsum_per_user(gaps, lengths))

    events = pd.DataFrame(
        {
            "event_id": [f"e{n}" for n in range(len(topic))],
            "user_id": [f"u{u}" for u in user_of_event],
            "item_id": item_ids[item],
            "event_type": kinds,
            "value": value,
            "text": text,
            "timestamp": timestamp.astype(np.int64),
        }
    )
    user_table = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in range(users)],
            "pattern": [PATTERNS[p] for p in patterns],
            "switch_at": np.where(patterns == 2, switch_at, np.nan),
            "events": lengths,
        }
    )
    return SyntheticDataset(
        events, items, topic_labels, texts.topic_words, item_topics, user_table, preference
    )


def _cumsum_per_user(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Cumulative sums that restart at each user's first event."""
    total = np.cumsum(values)
    offsets = np.repeat(np.concatenate([[0.0], total[np.cumsum(lengths)[:-1] - 1]]), lengths)
    result: np.ndarray = total - offsets
    return result
