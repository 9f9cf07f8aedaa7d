"""The four evorec services start on the runtime, serve health and reflection, and import
only what they need."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from evorec.platform.registry import SERVICES
from tests.conftest import Stack
from tests.support import channel


@pytest.mark.parametrize("name", list(SERVICES))
async def test_each_service_serves_health_and_reflection(
    name: str, stack: Stack, prepared: Path, model_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = SERVICES[name]
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    monkeypatch.setenv("EVOREC_SERVING__BASE_PATH", str(model_base))
    if name != "preprocess":  # every other service may call it
        await stack.start("preprocess")
    server = await stack.start(name)
    async with channel(server.port) as ch:
        response = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=entry.full_name), timeout=2
        )
    assert response.status == health_pb2.HealthCheckResponse.SERVING

    def reflected() -> list[str]:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as sync_channel:
            database = ProtoReflectionDescriptorDatabase(sync_channel)
            return [
                method.name
                for service in database.FindFileContainingSymbol(entry.full_name).service
                for method in service.method
            ]

    assert await asyncio.to_thread(reflected) == [m.name for m in entry.descriptor.methods]


def test_only_the_ranking_service_imports_tensorflow() -> None:
    code = (
        "import sys; import evorec.cli, evorec.platform.clients;"
        "import evorec.preprocess.service, evorec.embedding.service, evorec.interest.service;"
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
