"""ForecastInterests' answer built from the small exported model, without the services: what
is flagged when the encoder did not answer, and what an export without forecasts gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from evorec.encoder.bundle import BUNDLE_DIR, ModelBundle
from evorec.ranking.forecast import ForecastQuery, forecast_response
from evorec.ranking.item_space import ItemSpace
from evorec.v1 import ranking_pb2

ENCODER = ranking_pb2.FORECAST_METHOD_ENCODER
HIDDEN_MARKOV = ranking_pb2.FORECAST_METHOD_HIDDEN_MARKOV


def query(horizon: int = 4) -> ForecastQuery:
    history = np.arange(1, 13, dtype=np.int64)  # the first twelve items of the model
    return ForecastQuery(user_id="", history=history, inline=True, horizon=horizon)


def test_an_encoder_that_did_not_answer_is_flagged_and_not_recommended(
    model_base: Path,
) -> None:
    space = ItemSpace(ModelBundle.load(model_base / "encoder" / "1"), {})
    response = forecast_response(space, query(), None, "the encoder did not answer: slow")
    encoder = next(f for f in response.forecasts if f.method == ENCODER)
    assert not encoder.available
    assert encoder.unavailable_reason == "the encoder did not answer: slow"
    assert not encoder.distribution.weights
    assert encoder.offline_score.users > 0  # its track record is still shown
    assert response.recommended_method not in (ENCODER, ranking_pb2.FORECAST_METHOD_UNSPECIFIED)
    assert len(response.hidden_markov.steps) == 4


def test_an_export_without_forecasts_recommends_nothing_and_scores_nothing(
    model_base: Path, tmp_path: Path
) -> None:
    shutil.copytree(model_base / "encoder" / "1", tmp_path / "1")
    for name in ("evolution.json", "hmm.json"):
        (tmp_path / "1" / BUNDLE_DIR / name).unlink()
    space = ItemSpace(ModelBundle.load(tmp_path / "1"), {})
    vector = np.ones(space.table.shape[1], dtype=np.float32)
    response = forecast_response(space, query(), vector, "")
    assert response.recommended_method == ranking_pb2.FORECAST_METHOD_UNSPECIFIED
    assert not any(f.HasField("offline_score") for f in response.forecasts)
    hidden = next(f for f in response.forecasts if f.method == HIDDEN_MARKOV)
    assert not hidden.available
    assert "without interest forecasts" in hidden.unavailable_reason
    assert all(f.available for f in response.forecasts if f.method != HIDDEN_MARKOV)
    assert not response.HasField("hidden_markov")
