"""The profile picture: days without events are gaps, not drops to zero; the `profile`
command prints and draws every forecast method, and stands without the ranking service."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evorec import cli
from evorec.interest.plot import active_runs, plot_profile
from evorec.platform.validation import DAY, timestamp
from evorec.v1 import common_pb2, interest_pb2, ranking_pb2


def test_runs_of_buckets_with_events() -> None:
    assert active_runs([3, 0, 0, 2, 1, 0, 4]) == [range(0, 1), range(3, 5), range(6, 7)]
    assert active_runs([0, 0]) == []
    assert active_runs([1, 1]) == [range(0, 2)]


def bucket(day: int, events: int) -> interest_pb2.TimelineBucket:
    weights = [common_pb2.TopicWeight(topic_id="t1", label="one", weight=1.0)] if events else []
    return interest_pb2.TimelineBucket(
        start_time=timestamp(1.6e9 + day * DAY),
        end_time=timestamp(1.6e9 + (day + 1) * DAY),
        event_count=events,
        distribution=common_pb2.TopicDistribution(weights=weights),
    )


def test_a_profile_with_idle_days_is_drawn(tmp_path: Path) -> None:
    profile = interest_pb2.InterestProfile(
        user_id="idle",
        event_count=7,
        timeline=[bucket(0, 3), bucket(1, 0), bucket(2, 0), bucket(3, 4)],
    )
    plot_profile(profile, tmp_path / "idle.png")
    assert (tmp_path / "idle.png").read_bytes()[:4] == b"\x89PNG"


def forecast_answer() -> ranking_pb2.ForecastInterestsResponse:
    """Two methods that answered (different topics), one that could not, two regimes."""

    def shares(weights: dict[str, float]) -> common_pb2.TopicDistribution:
        return common_pb2.TopicDistribution(
            weights=[
                common_pb2.TopicWeight(topic_id=t, label=t, weight=w) for t, w in weights.items()
            ]
        )

    return ranking_pb2.ForecastInterestsResponse(
        forecasts=[
            ranking_pb2.MethodForecast(
                method=ranking_pb2.FORECAST_METHOD_ENCODER,
                available=True,
                distribution=shares({"t1": 0.75, "t2": 0.25}),
            ),
            ranking_pb2.MethodForecast(
                method=ranking_pb2.FORECAST_METHOD_HIDDEN_MARKOV,
                available=False,
                unavailable_reason="the export holds no hidden Markov model",
            ),
            ranking_pb2.MethodForecast(
                method=ranking_pb2.FORECAST_METHOD_LAST_WINDOW,
                available=True,
                distribution=shares({"t2": 0.6, "t1": 0.4}),
            ),
        ],
        recommended_method=ranking_pb2.FORECAST_METHOD_ENCODER,
        history_length=6,
        hidden_markov=ranking_pb2.HiddenMarkovForecast(
            path=[0, 0, 0, 1, 1, 1],
            regime_changes=[ranking_pb2.RegimeChange(position=3, from_state=0, to_state=1)],
        ),
    )


PROFILE = interest_pb2.InterestProfile(
    user_id="u", event_count=7, timeline=[bucket(0, 3), bucket(1, 0), bucket(3, 4)]
)


def fake_call(forecast: ranking_pb2.ForecastInterestsResponse | None) -> object:
    """`evorec.cli._call` answering from memory; RankingService fails when `forecast` is None."""

    def call(service: str, coroutine: Coroutine[Any, Any, Any]) -> object:
        coroutine.close()
        if service == "InterestService":
            return interest_pb2.GetInterestProfileResponse(profile=PROFILE)
        if forecast is None:
            raise RuntimeError("RankingService: UNAVAILABLE: connection refused")
        return forecast

    return call


def test_the_profile_prints_and_draws_every_forecast_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_call", fake_call(forecast_answer()))
    picture = tmp_path / "u.png"
    result = CliRunner().invoke(
        cli.app, ["profile", "u", "--out", str(picture)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "encoder (recommended)" in result.output
    assert "t1 0.75, t2 0.25" in result.output
    assert "unavailable: the export holds no hidden Markov model" in result.output
    assert "last_window" in result.output
    assert "t2 0.60, t1 0.40" in result.output
    assert "regime changes (position among the history's events with a topic): 3 (0->1)" in (
        result.output
    )
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_profile_stands_without_the_ranking_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_call", fake_call(None))
    picture = tmp_path / "u.png"
    result = CliRunner().invoke(
        cli.app, ["profile", "u", "--out", str(picture)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "interests of u" in result.output
    assert "no forecasts (RankingService: UNAVAILABLE" in result.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
