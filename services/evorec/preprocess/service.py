"""PreprocessService: `NormalizeText` over the text normalization of `evorec.preprocess.text`."""

from __future__ import annotations

import asyncio
from typing import Any

from evorec.platform.config import Settings
from evorec.platform.errors import Violations
from evorec.platform.server import GrpcService
from evorec.platform.validation import MAX_NORMALIZE_TEXTS, check_text
from evorec.preprocess.text import MAX_TOKENS, Language, TextOptions, normalize
from evorec.v1 import preprocess_pb2, preprocess_pb2_grpc

MAX_TEXTS = MAX_NORMALIZE_TEXTS
_TO_PROTO: dict[Language, int] = {
    "en": preprocess_pb2.LANGUAGE_ENGLISH,
    "zh": preprocess_pb2.LANGUAGE_CHINESE,
}
_FROM_PROTO: dict[int, Language | None] = {
    preprocess_pb2.LANGUAGE_UNSPECIFIED: None,
    **{number: name for name, number in _TO_PROTO.items()},
}


def text_options(
    request: preprocess_pb2.NormalizeTextRequest, violations: Violations
) -> TextOptions:
    """The library's options from the request's, recording bad values."""
    given = request.options
    defaults = TextOptions()
    max_tokens = given.max_tokens if given.HasField("max_tokens") else defaults.max_tokens
    violations.require(
        1 <= max_tokens <= MAX_TOKENS, "options.max_tokens", f"must be 1 to {MAX_TOKENS:,}"
    )
    violations.require(given.language in _FROM_PROTO, "options.language", "unknown language")
    return TextOptions(
        remove_stopwords=given.remove_stopwords
        if given.HasField("remove_stopwords")
        else defaults.remove_stopwords,
        stem=given.stem if given.HasField("stem") else defaults.stem,
        max_tokens=max_tokens,
        language=_FROM_PROTO.get(given.language),
    )


def validate(request: preprocess_pb2.NormalizeTextRequest) -> TextOptions:
    """Checks the request's limits and values; raises with every violation at once."""
    violations = Violations()
    violations.within_limit(len(request.texts), MAX_TEXTS, "texts", "texts")
    for index, text in enumerate(request.texts):
        check_text(violations, text, f"texts[{index}]")
    options = text_options(request, violations)
    violations.raise_if_any()
    return options


def normalize_batch(texts: list[str], options: TextOptions) -> preprocess_pb2.NormalizeTextResponse:
    results = []
    for text in texts:
        normalized = normalize(text, options)
        results.append(
            preprocess_pb2.NormalizedText(
                tokens=normalized.tokens,
                language=_TO_PROTO[normalized.language],  # type: ignore[arg-type]
                truncated=normalized.truncated,
            )
        )
    return preprocess_pb2.NormalizeTextResponse(results=results)


class PreprocessServicer(preprocess_pb2_grpc.PreprocessServiceServicer):
    """Normalizes texts off the event loop, so health checks stay answered under load."""

    async def NormalizeText(
        self, request: preprocess_pb2.NormalizeTextRequest, context: Any
    ) -> preprocess_pb2.NormalizeTextResponse:
        options = validate(request)
        return await asyncio.to_thread(normalize_batch, list(request.texts), options)


def create(settings: Settings) -> GrpcService:
    """The PreprocessService, ready for the runtime; loads the segmenter before SERVING."""
    servicer = PreprocessServicer()

    async def start() -> None:
        # The first Chinese text would otherwise pay for loading jieba's dictionary (~1 s).
        await asyncio.to_thread(normalize, "预热", TextOptions())

    return GrpcService(
        name=preprocess_pb2.DESCRIPTOR.services_by_name["PreprocessService"].full_name,
        register=lambda server: preprocess_pb2_grpc.add_PreprocessServiceServicer_to_server(
            servicer, server
        ),
        start=start,
    )
