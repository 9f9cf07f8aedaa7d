"""ForecastInterests: where a user's interests go over the next N interactions, by every
method the model version holds (see `evorec.evolution`), each with its track record from
export, and the method recommended for a history this long.

A method the model cannot give is listed as unavailable with the reason (an export without a
hidden Markov model, an encoder that did not answer), never an error: the other methods
still answer. An unknown user (no stored events) is NOT_FOUND, as in GetInterestProfile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from evorec.evolution import methods
from evorec.evolution.hmm import regime_changes
from evorec.evolution.track_record import forecasts
from evorec.platform.errors import NotFound, Violations, dependency_error
from evorec.platform.validation import check_id, check_time
from evorec.ranking.item_space import ItemSpace
from evorec.topic_distributions import Distribution
from evorec.v1 import common_pb2, interest_pb2, interest_pb2_grpc, ranking_pb2

MAX_HORIZON = 100
MAX_INLINE_HISTORY = 10_000

METHOD_ENUM = {
    methods.ENCODER: ranking_pb2.FORECAST_METHOD_ENCODER,
    methods.HIDDEN_MARKOV: ranking_pb2.FORECAST_METHOD_HIDDEN_MARKOV,
    methods.TOPIC_MARKOV: ranking_pb2.FORECAST_METHOD_TOPIC_MARKOV,
    methods.LAST_WINDOW: ranking_pb2.FORECAST_METHOD_LAST_WINDOW,
}
NO_TOPICS = "no event of the history has a known topic"


@dataclass
class ForecastQuery:
    """A validated request; a stored user's history is fetched after validation."""

    user_id: str
    history: np.ndarray  # item indexes, oldest first
    inline: bool
    horizon: int


def parse_forecast_request(
    request: ranking_pb2.ForecastInterestsRequest, space: ItemSpace, violations: Violations
) -> ForecastQuery:
    """Validates `request`; problems go to `violations`."""
    violations.require(
        1 <= request.horizon <= MAX_HORIZON, "horizon", f"must be 1 to {MAX_HORIZON}"
    )
    subject = request.WhichOneof("subject")
    indexes: list[int] = []
    if subject is None:
        violations.add("user_id", "set user_id or history")
    elif subject == "user_id":
        check_id(violations, request.user_id, "user_id")
    else:
        items = request.history.items
        violations.require(len(items) > 0, "history.items", "must not be empty")
        violations.within_limit(len(items), MAX_INLINE_HISTORY, "history.items", "items")
        for number, item in enumerate(items[:MAX_INLINE_HISTORY]):
            index = space.index.get(item.item_id)
            violations.require(
                index is not None, f"history.items[{number}].item_id", "unknown item"
            )
            indexes.append(index or 0)
            if item.HasField("event_time"):
                check_time(violations, item.event_time, f"history.items[{number}].event_time")
        if items and all(item.HasField("event_time") for item in items[:MAX_INLINE_HISTORY]):
            times = [(i.event_time.seconds, i.event_time.nanos) for i in items[:MAX_INLINE_HISTORY]]
            order = sorted(range(len(times)), key=times.__getitem__)
            indexes = [indexes[i] for i in order]
    return ForecastQuery(
        user_id=request.user_id,
        history=np.array(indexes, dtype=np.int64),
        inline=subject == "history",
        horizon=request.horizon,
    )


async def stored_history(
    interest: interest_pb2_grpc.InterestServiceAsyncStub,
    space: ItemSpace,
    user_id: str,
    limit: int,
) -> np.ndarray:
    """The user's newest `limit` events' items known to the space, oldest first; NOT_FOUND
    for a user with no stored events; the interest service's failure passes through."""
    try:
        response = await interest.GetRecentItems(
            interest_pb2.GetRecentItemsRequest(user_id=user_id, limit=limit)
        )
    except grpc.aio.AioRpcError as error:
        raise dependency_error("InterestService", error) from error
    if not response.item_ids:
        raise NotFound("user", user_id)
    found = [space.index.get(item_id) for item_id in reversed(response.item_ids)]
    return np.array([i for i in found if i is not None], dtype=np.int64)


def encoder_first_step(space: ItemSpace, user_vector: np.ndarray) -> Distribution:
    """The encoder's next-item softmax over the model's items, summed per topic."""
    n = space.n_model_items + 1
    scores = (space.table[:n] @ user_vector)[None, :]
    probabilities = methods.next_item_probabilities(scores)[0]
    codes = space.topic_codes[:n]
    known = codes >= 0
    mass = np.bincount(codes[known], weights=probabilities[known], minlength=len(space.topics))
    total = float(mass.sum())
    return {t: float(m) / total for t, m in zip(space.topics, mass, strict=True) if m > 0}


def _distribution(space: ItemSpace, distribution: Distribution) -> common_pb2.TopicDistribution:
    ordered = sorted(distribution.items(), key=lambda kv: (-kv[1], kv[0]))
    return common_pb2.TopicDistribution(
        weights=[
            common_pb2.TopicWeight(topic_id=t, label=space.topic_labels.get(t, t), weight=w)
            for t, w in ordered
        ]
    )


def _unavailable_reasons(
    space: ItemSpace, topics: Sequence[str], encoder_problem: str
) -> dict[str, str]:
    evolution = space.bundle.evolution
    reasons = {}
    if encoder_problem:
        reasons[methods.ENCODER] = encoder_problem
    if evolution is None:
        reasons[methods.HIDDEN_MARKOV] = "the model was exported without interest forecasts"
    elif evolution.hmm is None:
        reasons[methods.HIDDEN_MARKOV] = "the model has no hidden Markov model (too little data)"
    if not topics:
        for method in methods.METHODS:
            reasons.setdefault(method, NO_TOPICS)
    return reasons


def _hidden_markov(
    space: ItemSpace, topics: Sequence[str], horizon: int
) -> ranking_pb2.HiddenMarkovForecast | None:
    evolution = space.bundle.evolution
    hmm = evolution.hmm if evolution is not None else None
    if hmm is None:
        return None
    codes = hmm.codes(topics)
    posterior = hmm.posterior(codes)
    path = hmm.path(codes)
    return ranking_pb2.HiddenMarkovForecast(
        states=[
            ranking_pb2.InterestState(state=s, label=hmm.labels[s], probability=float(p))
            for s, p in enumerate(posterior)
        ],
        path=path.tolist(),
        regime_changes=[
            ranking_pb2.RegimeChange(
                position=int(i), from_state=int(path[i - 1]), to_state=int(path[i])
            )
            for i in regime_changes(path)
        ],
        steps=[_distribution(space, step) for step in hmm.forecast(codes, horizon)],
    )


def forecast_response(
    space: ItemSpace,
    query: ForecastQuery,
    user_vector: np.ndarray | None,
    encoder_problem: str,
) -> ranking_pb2.ForecastInterestsResponse:
    """Every method's forecast for `query` (`user_vector`: None when the encoder did not
    answer, `encoder_problem` saying why)."""
    evolution = space.bundle.evolution
    topics = [t for t in (space.topic_of(int(i)) for i in query.history) if t]
    first = encoder_first_step(space, user_vector) if user_vector is not None else None
    if first is None and not encoder_problem:
        encoder_problem = "no item of the history is known to the model"
    found = forecasts(
        topics,
        first,
        evolution.hmm if evolution is not None else None,
        query.horizon,
    )
    reasons = _unavailable_reasons(space, topics, encoder_problem)
    answers = []
    for method in methods.METHODS:
        answer = ranking_pb2.MethodForecast(
            method=METHOD_ENUM[method],
            available=method not in reasons,
            unavailable_reason=reasons.get(method, ""),
        )
        if method not in reasons:
            answer.distribution.CopyFrom(_distribution(space, found[method]))
        scored = evolution.score_of(method, len(topics)) if evolution is not None else None
        if scored is not None:
            band, values = scored
            answer.offline_score.CopyFrom(
                ranking_pb2.ForecastScore(
                    js_divergence=values["js_divergence"],
                    top_topic_accuracy=values["top_topic_accuracy"],
                    users=int(values["users"]),
                    horizon=evolution.score_horizon if evolution is not None else 0,
                    history_band=band,
                )
            )
        answers.append(answer)
    available = [m for m in methods.METHODS if m not in reasons]
    recommended = evolution.recommended(len(topics), available) if evolution is not None else None
    response = ranking_pb2.ForecastInterestsResponse(
        forecasts=answers,
        recommended_method=METHOD_ENUM[recommended] if recommended else 0,  # type: ignore[arg-type]
        history_length=len(topics),
        model_version=str(space.bundle.version),
    )
    if topics:
        view = _hidden_markov(space, topics, query.horizon)
        if view is not None:
            response.hidden_markov.CopyFrom(view)
    return response
