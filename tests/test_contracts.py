"""The published contracts: the RPC names DESIGN.md fixes, and retry safety declared per RPC."""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from evorec.platform.registry import SERVICES

# DESIGN.md, "Contracts": names are fixed so that callers and issues agree; RPCs added since
# (ListTopics, ListItems, GetRecentItems) are listed with them.
FIXED_RPCS = {
    "evorec.v1.PreprocessService": ["NormalizeText"],
    "evorec.v1.EmbeddingService": [
        "EmbedTexts",
        "GetItemVectors",
        "UpsertItems",
        "SimilarItems",
        "ListTopics",
        "ListItems",
    ],
    "evorec.v1.InterestService": [
        "IngestEvents",
        "StreamEvents",
        "GetUserHistory",
        "GetRecentItems",
        "GetInterestProfile",
        "DeleteUser",
    ],
    "evorec.v1.RankingService": ["Recommend", "RecommendBatch"],
}


def test_services_and_rpcs_are_those_design_md_fixes() -> None:
    assert {
        e.full_name: [m.name for m in e.descriptor.methods] for e in SERVICES.values()
    } == FIXED_RPCS


def test_every_rpc_has_its_own_request_and_response() -> None:
    for entry in SERVICES.values():
        for method in entry.descriptor.methods:
            assert method.input_type.name == f"{method.name}Request"
            assert method.output_type.name == f"{method.name}Response"


def test_every_unary_rpc_declares_whether_a_retry_is_safe() -> None:
    unknown = descriptor_pb2.MethodOptions.IDEMPOTENCY_UNKNOWN
    undeclared = [
        f"{entry.full_name}/{method.name}"
        for entry in SERVICES.values()
        for method in entry.descriptor.methods
        if not method.client_streaming and method.GetOptions().idempotency_level == unknown
    ]
    assert undeclared == []
