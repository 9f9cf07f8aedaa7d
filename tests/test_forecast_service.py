"""ForecastInterests end to end: the real services over the simulated data and the small
exported model (the fixtures of test_ranking_service), and the same model with its hidden
Markov model, then its whole evolution part, taken away (an older export)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from evorec.encoder.bundle import BUNDLE_DIR
from evorec.platform.clients import ranking_client
from evorec.platform.errors import field_violations
from evorec.v1 import ranking_pb2
from tests.conftest import Stack
from tests.test_ranking_service import base, ingest, items_by_topic, services

__all__ = ["base", "services"]  # fixtures, used by name

ENCODER = ranking_pb2.FORECAST_METHOD_ENCODER
HIDDEN_MARKOV = ranking_pb2.FORECAST_METHOD_HIDDEN_MARKOV
LAST_WINDOW = ranking_pb2.FORECAST_METHOD_LAST_WINDOW
ALL_METHODS = [ENCODER, HIDDEN_MARKOV, ranking_pb2.FORECAST_METHOD_TOPIC_MARKOV, LAST_WINDOW]


async def forecast(stack: Stack, **fields: object) -> ranking_pb2.ForecastInterestsResponse:
    async with ranking_client(stack.settings()) as ranking:
        return await ranking.stub.ForecastInterests(ranking_pb2.ForecastInterestsRequest(**fields))


def by_method(
    response: ranking_pb2.ForecastInterestsResponse,
) -> dict[int, ranking_pb2.MethodForecast]:
    return {f.method: f for f in response.forecasts}


def top(forecast: ranking_pb2.MethodForecast) -> str:
    return forecast.distribution.weights[0].topic_id


async def test_every_method_forecasts_a_user_who_moved_to_another_topic(
    services: Stack, prepared: Path
) -> None:
    await services.start("ranking")
    topics = items_by_topic(prepared)
    first, second = sorted(topics)[0], sorted(topics)[2]
    await ingest(services, "mover", topics[first][:20] + topics[second][:20], time.time() - 3600)
    response = await forecast(services, user_id="mover", horizon=5)
    assert [f.method for f in response.forecasts] == ALL_METHODS
    assert all(f.available and not f.unavailable_reason for f in response.forecasts)
    for method in response.forecasts:
        assert sum(w.weight for w in method.distribution.weights) == pytest.approx(1)
        assert method.offline_score.horizon == 1
        assert method.offline_score.users > 0
        assert 0 <= method.offline_score.js_divergence <= 1
    assert top(by_method(response)[LAST_WINDOW]) == second
    assert top(by_method(response)[HIDDEN_MARKOV]) == second
    assert response.history_length == 40
    assert response.model_version == "1"
    assert response.recommended_method in ALL_METHODS
    hidden = response.hidden_markov
    assert len(hidden.path) == 40
    assert len(hidden.steps) == 5
    assert sum(s.probability for s in hidden.states) == pytest.approx(1)
    assert all(s.label for s in hidden.states)
    # The move from one topic to the other is a change of regime, after the first 20 events.
    assert hidden.regime_changes
    assert all(c.from_state != c.to_state for c in hidden.regime_changes)
    assert max(c.position for c in hidden.regime_changes) >= 20

    inline = ranking_pb2.InlineHistory(
        items=[ranking_pb2.HistoryItem(item_id=i) for i in topics[second][:30]]
    )
    far = await forecast(services, history=inline, horizon=100)
    assert len(far.hidden_markov.steps) == 100
    assert far.history_length == 30
    assert top(by_method(far)[LAST_WINDOW]) == second


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"user_id": "mover", "horizon": 0}, grpc.StatusCode.INVALID_ARGUMENT, "horizon"),
        ({"user_id": "mover", "horizon": 101}, grpc.StatusCode.INVALID_ARGUMENT, "horizon"),
        ({"horizon": 3}, grpc.StatusCode.INVALID_ARGUMENT, "user_id"),
        ({"user_id": "x" * 129, "horizon": 3}, grpc.StatusCode.INVALID_ARGUMENT, "user_id"),
        (
            {
                "history": ranking_pb2.InlineHistory(
                    items=[
                        ranking_pb2.HistoryItem(item_id="i1"),
                        ranking_pb2.HistoryItem(item_id="nope"),
                    ]
                ),
                "horizon": 3,
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "history.items[1].item_id",
        ),
        ({"user_id": "never-seen", "horizon": 3}, grpc.StatusCode.NOT_FOUND, None),
    ],
)
async def test_bad_input_names_the_field(
    services: Stack, fields: dict[str, object], code: grpc.StatusCode, field: str | None
) -> None:
    await services.start("ranking")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await forecast(services, **fields)
    assert caught.value.code() == code
    if field is not None:
        assert field in [v.field for v in field_violations(caught.value)]


async def test_an_older_export_answers_without_what_it_lacks(
    services: Stack, base: Path, prepared: Path
) -> None:
    bundle = base / "encoder" / "1" / BUNDLE_DIR
    (bundle / "hmm.json").unlink()
    await services.start("ranking")
    topics = items_by_topic(prepared)
    inline = ranking_pb2.InlineHistory(
        items=[ranking_pb2.HistoryItem(item_id=i) for i in topics[sorted(topics)[1]][:10]]
    )
    response = await forecast(services, history=inline, horizon=3)
    hidden = by_method(response)[HIDDEN_MARKOV]
    assert not hidden.available
    assert "hidden Markov" in hidden.unavailable_reason
    assert not hidden.distribution.weights
    assert not response.HasField("hidden_markov")
    assert response.recommended_method in [m for m in ALL_METHODS if m != HIDDEN_MARKOV]
    assert by_method(response)[ENCODER].available
