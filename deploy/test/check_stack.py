"""The checks deploy/test.sh makes from outside the containers, through the published ports,
as another team's service would call evorec. Each subcommand prints what it found and exits
non-zero, saying why, when the stack does not do what it should.

  check_stack.py follow USER        ingests a user's events, all in one topic, and checks that
                                    the recommendations follow them (not a cold start, a
                                    model version named, most items in that topic)
  check_stack.py history USER N     checks that USER's N events are stored (after a restart)
  check_stack.py version USER V     checks that ranking answered with model version V and
                                    with the encoder, not without it
"""

import sys
import time
from collections import Counter

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from evorec.v1 import (
    common_pb2,
    interest_pb2,
    interest_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
)

INTEREST = "127.0.0.1:50053"
RANKING = "127.0.0.1:50054"
EVENTS = 8
TIMEOUT_S = 10.0


def recommend(user: str, k: int) -> ranking_pb2.RecommendResponse:
    with grpc.insecure_channel(RANKING) as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        request = ranking_pb2.RecommendRequest(user_id=user, k=k, diversity=0.0)
        response: ranking_pb2.RecommendResponse = stub.Recommend(request, timeout=TIMEOUT_S)
        return response


def follow(user: str) -> None:
    # A user nobody knows gets the popular items, each with its topic: take one topic's.
    popular = recommend(user, 200)
    if not popular.cold_start:
        sys.exit(f"{user} is not new: run against a fresh stack")
    by_topic: dict[str, list[str]] = {}
    for item in popular.recommendations:
        by_topic.setdefault(item.topic_id, []).append(item.item_id)
    topic, items = max(by_topic.items(), key=lambda entry: len(entry[1]))
    now = time.time()
    events = []
    for number, item_id in enumerate(items[:EVENTS]):
        when = Timestamp()
        when.FromSeconds(int(now) - 60 * (EVENTS - number))
        events.append(
            common_pb2.Event(
                event_id=f"{user}-{number}",
                user_id=user,
                item_id=item_id,
                type=common_pb2.EVENT_TYPE_VIEW,
                event_time=when,
            )
        )
    with grpc.insecure_channel(INTEREST) as channel:
        stub = interest_pb2_grpc.InterestServiceStub(channel)
        summary = stub.IngestEvents(
            interest_pb2.IngestEventsRequest(events=events), timeout=TIMEOUT_S
        ).summary
    if summary.accepted_count != len(events):
        sys.exit(f"ingest accepted {summary.accepted_count} of {len(events)} events: {summary}")
    answer = recommend(user, 10)
    topics = Counter(item.topic_id for item in answer.recommendations)
    share = topics[topic] / max(1, len(answer.recommendations))
    print(
        f"ingested {len(events)} events in topic {topic}; recommended {len(answer.recommendations)}"
        f" items, {share:.0%} in that topic; model version {answer.model_version!r};"
        f" cold start {answer.cold_start}"
    )
    if answer.cold_start or not answer.model_version or share < 0.5:
        sys.exit("the recommendations do not follow the user's events")


def history(user: str, expected: int) -> None:
    with grpc.insecure_channel(INTEREST) as channel:
        stub = interest_pb2_grpc.InterestServiceStub(channel)
        response = stub.GetUserHistory(
            interest_pb2.GetUserHistoryRequest(user_id=user, page_size=1000), timeout=TIMEOUT_S
        )
    print(f"{user} has {len(response.events)} events stored")
    if len(response.events) != expected:
        sys.exit(f"expected {expected} events")


def version(user: str, expected: str) -> None:
    answer = recommend(user, 10)
    degraded = [ranking_pb2.CandidateSource.Name(s) for s in answer.degraded_sources]
    print(f"model version {answer.model_version!r}; degraded sources {degraded}")
    if answer.model_version != expected or degraded:
        sys.exit(f"expected model version {expected!r} with no degraded source")


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "follow":
        follow(*arguments)
    elif command == "history":
        history(arguments[0], int(arguments[1]))
    elif command == "version":
        version(*arguments)
    else:
        sys.exit(__doc__)
