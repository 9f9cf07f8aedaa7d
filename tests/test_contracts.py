"""The published contracts: the RPC names DESIGN.md fixes, and retry safety declared per RPC."""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from evorec.platform.registry import SERVICES

# DESIGN.md, "Contracts": names are fixed so that callers and issues agree; RPCs added since
# (ListTopics, ListItems, GetRecentItems, ExportEvents) are listed with them.
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
        "ExportEvents",
    ],
    # ForecastInterests: the forecast RPC DESIGN.md plans on RankingService (issue 13).
    "evorec.v1.RankingService": ["Recommend", "RecommendBatch", "ForecastInterests"],
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


# The import path of the published Go client (clients/go); changing it breaks every Go caller.
GO_PACKAGE = "github.com/evorec/evorec/clients/go/evorec/v1;evorecv1"


def test_every_contract_file_keeps_the_go_package_of_the_go_client() -> None:
    files = {entry.descriptor.file for entry in SERVICES.values()}
    files |= {dependency for file in set(files) for dependency in file.dependencies}
    evorec_files = sorted(f.name for f in files if f.package == "evorec.v1")
    assert evorec_files == [
        "evorec/v1/common.proto",
        "evorec/v1/embedding.proto",
        "evorec/v1/interest.proto",
        "evorec/v1/preprocess.proto",
        "evorec/v1/ranking.proto",
    ]
    assert {
        f.name: f.GetOptions().go_package for f in files if f.package == "evorec.v1"
    } == dict.fromkeys(evorec_files, GO_PACKAGE)
