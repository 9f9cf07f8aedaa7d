"""What the Go and TypeScript clients' quickstart examples must show against the four real
services: recommendations that follow the ingested events, a retried ingest stored once, an
INVALID_ARGUMENT naming its field, a NOT_FOUND profile."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import pytest

from tests.conftest import Stack
from tests.flaky_proxy import flaky_proxy

USER = "polyglot"
INGEST = "/evorec.v1.InterestService/IngestEvents"


def missing(reason: str) -> NoReturn:
    """Skips on a developer's machine; fails in CI (where the env var CI is set), which must
    have every toolchain."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must have it (.ci/run installs it)")
    pytest.skip(reason)


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed ({hint})")
    return path


@dataclass(frozen=True)
class Services:
    """The addresses of the running services, and the items the user will view."""

    interest: str
    ranking: str
    topic: str
    items: list[str]


async def start_services(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, prepared: Path, models: Path, tmp_path: Path
) -> Services:
    """All four services over the simulated data and a copy of the small model (version 1)."""
    monkeypatch.setenv("EVOREC_DATASET", str(prepared))
    shutil.copytree(models, tmp_path / "models")
    monkeypatch.setenv("EVOREC_SERVING__BASE_PATH", str(tmp_path / "models"))
    for name in ("preprocess", "embedding", "interest", "ranking"):
        await stack.start(name)
    items = pd.read_parquet(prepared / "items.parquet")
    topic = sorted(items["topic_id"].unique())[0]
    viewed = items.loc[items["topic_id"] == topic, "item_id"].tolist()[:15]
    return Services(
        interest=f"127.0.0.1:{stack.running['interest'].port}",
        ranking=f"127.0.0.1:{stack.running['ranking'].port}",
        topic=str(topic),
        items=[str(item) for item in viewed],
    )


async def run_example(command: list[str], env: dict[str, str] | None = None) -> list[Any]:
    """Runs an example program (without blocking the services, which share this event loop)
    and returns the JSON objects it printed, one per line."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    return [json.loads(line) for line in stdout.decode().splitlines()]


async def run_quickstart(
    services: Services,
    command: Callable[[str, str], list[str]],
    env: dict[str, str] | None = None,
) -> None:
    """Runs an example (`command(interest_address, ranking_address)`) with the interest
    service behind a proxy that drops the first IngestEvents call, and checks its output."""
    async with flaky_proxy(services.interest, INGEST) as proxy:
        lines = await run_example(command(proxy.address, services.ranking), env)
    check_quickstart(lines, services)
    # The dropped first ingest was retried by the client's retry policy, and stored once;
    # the repeated ingest went through at the first attempt.
    assert proxy.calls[INGEST] == 3


def check_quickstart(lines: list[Any], services: Services) -> None:
    """The assertions both languages' examples must pass."""
    health = [line for line in lines if line["step"] == "health"]
    assert [(h["service"], h["status"]) for h in health] == [
        ("evorec.v1.InterestService", "SERVING"),
        ("evorec.v1.RankingService", "SERVING"),
    ]
    steps = {line["step"]: line for line in lines if line["step"] != "health"}
    count = len(services.items)
    assert steps["ingest"] == {"step": "ingest", "accepted": count, "duplicates": 0, "rejected": 0}
    assert steps["ingest_again"] == {
        "step": "ingest_again",
        "accepted": 0,
        "duplicates": count,
        "rejected": 0,
    }

    recommended = steps["recommend"]
    assert recommended["cold_start"] is False
    assert recommended["model_version"] == "1"
    assert "CANDIDATE_SOURCE_ENCODER" in recommended["sources_used"]
    items = recommended["recommendations"]
    assert len(items) == 10
    assert not {r["item_id"] for r in items} & set(services.items)
    assert Counter(r["topic_id"] for r in items).most_common(1)[0][0] == services.topic
    assert all(r["reason"] and r["sources"] and r["title"] for r in items)

    profile = steps["profile"]
    assert profile["user_id"] == USER
    assert int(profile["event_count"]) == count
    assert profile["current"][0]["topic_id"] == services.topic

    invalid = steps["empty_user_id"]
    assert invalid["code"] == "INVALID_ARGUMENT"
    assert [v["field"] for v in invalid["violations"]] == ["user_id"]
    assert steps["unknown_user"]["code"] == "NOT_FOUND"
    assert steps["unknown_user"]["violations"] == []
