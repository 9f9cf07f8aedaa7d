"""The picture of a user's interest profile: the timeline as stacked areas per topic, and
the predicted distributions of the next interactions beside it. A stretch of buckets without
events is a gap in the areas, not a drop to zero: the user did nothing then, which says
nothing about their interests.

Beside them, when RankingService answered ForecastInterests, every method's forecast as
stacked bars, and below the timeline the hidden Markov model's most likely state per event
with its regime changes marked. Those are positions among the history's events with a known
topic, which carry no times (and the ranking service may have left out events of items it
does not know), so they are drawn on their own history-position axis rather than guessed
onto the timeline's dates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evorec.platform.enums import enum_label
from evorec.plotting import pyplot
from evorec.v1 import common_pb2, interest_pb2, ranking_pb2

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


def _stacked_bars(
    axes: Any,
    names: Sequence[str],
    distributions: Sequence[common_pb2.TopicDistribution],
    colours: dict[str, Any],
) -> None:
    """One bar per distribution, its topics' weights stacked in the timeline's colours."""
    bottoms = [0.0] * len(names)
    for topic, colour in colours.items():
        heights = [
            next((w.weight for w in d.weights if w.topic_id == topic), 0.0) for d in distributions
        ]
        axes.bar(names, heights, bottom=bottoms, color=colour)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    axes.set_ylim(0, 1)
    axes.tick_params(axis="x", labelrotation=30)


def _regimes(axes: Any, hidden: ranking_pb2.HiddenMarkovForecast) -> None:
    """The most likely state of each event with a topic, and a line at each regime change."""
    axes.step(range(len(hidden.path)), list(hidden.path), where="post", color="black")
    for change in hidden.regime_changes:
        axes.axvline(change.position, color="red", linestyle="--")
        axes.annotate(
            f"{change.from_state}->{change.to_state}",
            (change.position, change.to_state),
            fontsize="small",
            color="red",
        )
    axes.set_xlabel("position among the history's events with a topic (0 = oldest)")
    axes.set_ylabel("state")
    axes.set_yticks(sorted(set(hidden.path)))
    axes.set_title(f"hidden Markov regimes ({len(hidden.regime_changes)} changes)")


def _forecast_panels(
    forecast_axes: Any,
    regime_axes: Any,
    forecast: ranking_pb2.ForecastInterestsResponse | None,
    colours: dict[str, Any],
) -> None:
    """Every method's forecast as bars (an unavailable one as an empty bar) and the regimes;
    without a forecast both panels say so."""
    if forecast is None:
        for axes in (forecast_axes, regime_axes):
            axes.text(0.5, 0.5, "ranking unreachable: no forecasts", ha="center", va="center")
            axes.set_axis_off()
        return
    names = [enum_label(ranking_pb2.ForecastMethod, m.method) for m in forecast.forecasts]
    _stacked_bars(forecast_axes, names, [m.distribution for m in forecast.forecasts], colours)
    forecast_axes.set_title("forecasts (ranking service)")
    if forecast.HasField("hidden_markov") and len(forecast.hidden_markov.path):
        _regimes(regime_axes, forecast.hidden_markov)
    else:
        regime_axes.text(0.5, 0.5, "no hidden Markov model", ha="center", va="center")
        regime_axes.set_axis_off()


def plot_profile(
    profile: interest_pb2.InterestProfile,
    path: Path,
    forecast: ranking_pb2.ForecastInterestsResponse | None = None,
) -> None:
    """Writes the profile's picture as a PNG at `path` (`forecast`: RankingService's
    ForecastInterests answer, None when it could not be had)."""
    plt = pyplot()
    labels: dict[str, str] = {}
    distributions = [b.distribution for b in profile.timeline]
    distributions += [p.distribution for p in profile.predictions]
    if forecast is not None:
        distributions += [m.distribution for m in forecast.forecasts]
    for distribution in distributions:
        for weight in distribution.weights:
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
    figure, panels = plt.subplot_mosaic(
        [["timeline", "predicted", "forecast"], ["regimes", "regimes", "regimes"]],
        figsize=(16, 8),
        gridspec_kw={"width_ratios": [3, 1, 1.3], "height_ratios": [3, 1.2]},
        constrained_layout=True,
    )
    left, right = panels["timeline"], panels["predicted"]
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
    _stacked_bars(right, names, [p.distribution for p in profile.predictions], colours)
    right.set_title(f"predicted next (drift {profile.drift_score:.2f})")
    _forecast_panels(panels["forecast"], panels["regimes"], forecast, colours)
    figure.savefig(path, dpi=100)
    plt.close(figure)
