"""A client in another language: Node.js, with stubs loaded from protos/, calls a service."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest

from evorec.platform.config import Settings
from evorec.platform.registry import create_service
from tests.conftest import ROOT

NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
async def test_a_node_client_calls_health_and_an_evorec_rpc(
    started: Any, settings: Settings
) -> None:
    assert (ROOT / "tests/node/node_modules/@grpc/grpc-js").is_dir(), (
        "run `npm ci --prefix tests/node` (make test does)"
    )
    server = await started(create_service("preprocess", settings))
    process = await asyncio.create_subprocess_exec(
        str(NODE),
        str(ROOT / "tests/node/client.js"),
        f"127.0.0.1:{server.port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    assert result["health"] == {"code": "OK", "response": {"status": "SERVING"}}
    assert result["normalize"] == {
        "code": "OK",
        "response": {
            "results": [
                {"tokens": ["hello", "world"], "language": "LANGUAGE_ENGLISH", "truncated": False}
            ]
        },
    }
