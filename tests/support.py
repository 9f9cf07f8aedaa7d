"""A small PreprocessService used to exercise the runtime: its behaviour is set per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc

from evorec.platform.config import Endpoint, ServerSettings
from evorec.platform.server import GrpcService, RunningServer, start_server
from evorec.v1 import preprocess_pb2, preprocess_pb2_grpc

Handler = Callable[[preprocess_pb2.NormalizeTextRequest, Any], Awaitable[Any]]
SERVICE_NAME = preprocess_pb2.DESCRIPTOR.services_by_name["PreprocessService"].full_name


async def echo(request: preprocess_pb2.NormalizeTextRequest, context: Any) -> Any:
    """Answers each text as its whitespace-split tokens."""
    return preprocess_pb2.NormalizeTextResponse(
        results=[preprocess_pb2.NormalizedText(tokens=text.split()) for text in request.texts]
    )


class ScriptedServicer(preprocess_pb2_grpc.PreprocessServiceServicer):
    """NormalizeText runs whatever handler the test gives; calls are recorded."""

    def __init__(self, handler: Handler = echo) -> None:
        self.handler = handler
        self.calls: list[tuple[preprocess_pb2.NormalizeTextRequest, Any]] = []

    async def NormalizeText(
        self, request: preprocess_pb2.NormalizeTextRequest, context: Any
    ) -> preprocess_pb2.NormalizeTextResponse:
        self.calls.append((request, context))
        return await self.handler(request, context)


def scripted_service(servicer: ScriptedServicer, gate: asyncio.Event | None = None) -> GrpcService:
    """A GrpcService around `servicer`; its start waits for `gate` when one is given."""

    async def start() -> None:
        if gate is not None:
            await gate.wait()

    return GrpcService(
        name=SERVICE_NAME,
        register=lambda server: preprocess_pb2_grpc.add_PreprocessServiceServicer_to_server(
            servicer, server
        ),
        start=start,
    )


@asynccontextmanager
async def serving(
    handler: Handler, endpoint: Endpoint, settings: ServerSettings
) -> AsyncIterator[RunningServer]:
    """A server whose NormalizeText runs `handler`, serving until the block ends."""
    server = await start_server(scripted_service(ScriptedServicer(handler)), endpoint, settings)
    try:
        await server.ready()
        yield server
    finally:
        await server.shutdown()


def channel(port: int) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{port}")
