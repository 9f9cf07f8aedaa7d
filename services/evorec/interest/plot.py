"""The picture of a user's interest profile: the timeline as stacked areas per topic, and
the predicted distributions of the next interactions beside it. A stretch of buckets without
events is a gap in the areas, not a drop to zero: the user did nothing then, which says
nothing about their interests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from evorec.plotting import pyplot
from evorec.v1 import interest_pb2

_METHODS = {
    interest_pb2.PREDICTION_METHOD_LAST_WINDOW: "last window",
    interest_pb2.PREDICTION_METHOD_MARKOV: "Markov",
    interest_pb2.PREDICTION_METHOD_ENCODER: "encoder",
}


def active_runs(event_counts: Sequence[int]) -> list[range]:
    """The runs of consecutive buckets with events, as ranges of bucket positions."""
    runs: list[range] = []
    start: int | None = None
    for position, count in enumerate([*event_counts, 0]):
        if count > 0 and start is None:
            start = position
        elif count == 0 and start is not None:
            runs.append(range(start, position))
            start = None
    return runs


def plot_profile(profile: interest_pb2.InterestProfile, path: Path) -> None:
    """Writes the profile's picture as a PNG at `path`."""
    plt = pyplot()
    labels: dict[str, str] = {}
    for bucket in profile.timeline:
        for weight in bucket.distribution.weights:
            labels.setdefault(weight.topic_id, weight.label or weight.topic_id)
    for prediction in profile.predictions:
        for weight in prediction.distribution.weights:
            labels.setdefault(weight.topic_id, weight.label or weight.topic_id)
    topics = sorted(labels)
    colours = {t: plt.get_cmap("tab20")(i % 20) for i, t in enumerate(topics)}
    times = [datetime.fromtimestamp(b.start_time.seconds, UTC) for b in profile.timeline]
    shares = [
        [
            next((w.weight for w in b.distribution.weights if w.topic_id == t), 0.0)
            for b in profile.timeline
        ]
        for t in topics
    ]
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(12, 5.5), gridspec_kw={"width_ratios": [3, 1]}, constrained_layout=True
    )
    for number, run in enumerate(active_runs([b.event_count for b in profile.timeline])):
        # A lone bucket is drawn from its start to its end, so that it is visible.
        ends = [datetime.fromtimestamp(profile.timeline[run[-1]].end_time.seconds, UTC)]
        run_times = [times[i] for i in run] + (ends if len(run) == 1 else [])
        run_shares = [[row[i] for i in run] * (2 if len(run) == 1 else 1) for row in shares]
        left.stackplot(
            run_times,
            run_shares,
            labels=[labels[t] for t in topics] if number == 0 else (),
            colors=[colours[t] for t in topics],
        )
    left.set_title(f"interests of {profile.user_id} over time ({profile.event_count} events)")
    left.set_ylabel("share of events")
    left.set_ylim(0, 1)
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize="small", ncol=4)
    names = [_METHODS.get(p.method, "?") for p in profile.predictions]
    bottoms = [0.0] * len(names)
    for topic in topics:
        heights = [
            next((w.weight for w in p.distribution.weights if w.topic_id == topic), 0.0)
            for p in profile.predictions
        ]
        right.bar(names, heights, bottom=bottoms, color=colours[topic])
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    right.set_title(f"predicted next (drift {profile.drift_score:.2f})")
    right.set_ylim(0, 1)
    figure.savefig(path, dpi=100)
    plt.close(figure)
