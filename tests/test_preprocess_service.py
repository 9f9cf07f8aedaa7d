"""PreprocessService over gRPC: batches, options, limits."""

from __future__ import annotations

import grpc
import pytest

from evorec.platform.errors import field_violations
from evorec.v1 import preprocess_pb2, preprocess_pb2_grpc
from tests.conftest import Stack
from tests.support import channel

Request = preprocess_pb2.NormalizeTextRequest


async def test_a_batch_is_normalized_in_order(stack: Stack) -> None:
    server = await stack.start("preprocess")
    async with channel(server.port) as ch:
        stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
        response = await stub.NormalizeText(
            Request(
                texts=["The <i>Running</i> Dogs!", "我喜欢看科幻电影", ""],
                options=preprocess_pb2.TextOptions(stem=True),
            )
        )
    assert [list(r.tokens) for r in response.results] == [
        ["run", "dog"],
        ["喜欢", "看", "科幻电影"],
        [],
    ]
    assert [r.language for r in response.results] == [
        preprocess_pb2.LANGUAGE_ENGLISH,
        preprocess_pb2.LANGUAGE_CHINESE,
        preprocess_pb2.LANGUAGE_ENGLISH,
    ]


async def test_options_default_and_truncation_is_reported(stack: Stack) -> None:
    server = await stack.start("preprocess")
    async with channel(server.port) as ch:
        stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
        keep = await stub.NormalizeText(
            Request(texts=["the cat"], options=preprocess_pb2.TextOptions(remove_stopwords=False))
        )
        cut = await stub.NormalizeText(
            Request(texts=["a b c d e f g"], options=preprocess_pb2.TextOptions(max_tokens=2))
        )
    assert list(keep.results[0].tokens) == ["the", "cat"]
    assert list(cut.results[0].tokens) == ["b", "c"]
    assert cut.results[0].truncated


@pytest.mark.parametrize(
    ("request_", "code", "violations"),
    [
        (Request(texts=["x"] * 1001), grpc.StatusCode.RESOURCE_EXHAUSTED,
         [("texts", "at most 1,000 texts, got 1,001")]),
        (Request(texts=["ok", "y" * 100_001]), grpc.StatusCode.RESOURCE_EXHAUSTED,
         [("texts[1]", "at most 100,000 characters, got 100,001")]),
        (Request(texts=["x"], options=preprocess_pb2.TextOptions(max_tokens=0)),
         grpc.StatusCode.INVALID_ARGUMENT, [("options.max_tokens", "must be 1 to 5,000")]),
        (Request(texts=["x"], options=preprocess_pb2.TextOptions(language=9)),  # type: ignore[arg-type]
         grpc.StatusCode.INVALID_ARGUMENT, [("options.language", "unknown language")]),
    ],
)  # fmt: skip
async def test_bad_requests_name_the_field(
    stack: Stack, request_: Request, code: grpc.StatusCode, violations: list[tuple[str, str]]
) -> None:
    server = await stack.start("preprocess")
    async with channel(server.port) as ch:
        stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.NormalizeText(request_)
    assert raised.value.code() == code
    assert [(v.field, v.description) for v in field_violations(raised.value)] == violations
