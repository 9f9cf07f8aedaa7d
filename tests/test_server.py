"""The service runtime: health, reflection, metrics, errors, limits, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from evorec.platform.config import load_settings
from evorec.platform.errors import InvalidArgument, NotFound, Violations, field_violations
from evorec.platform.probes import free_port
from evorec.v1 import preprocess_pb2, preprocess_pb2_grpc
from tests.conftest import ROOT
from tests.support import SERVICE_NAME, ScriptedServicer, channel, scripted_service, serving

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_status(port: int, service: str = SERVICE_NAME) -> int:
    async with channel(port) as ch:
        response = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
    return int(response.status)


async def test_health_is_not_serving_until_loaded_then_serving(started: Any) -> None:
    gate = asyncio.Event()
    server = await started(scripted_service(ScriptedServicer(), gate), ready=False)

    assert await health_status(server.port) == NOT_SERVING
    assert await health_status(server.port, "") == NOT_SERVING
    gate.set()
    await server.ready()
    assert await health_status(server.port) == SERVING
    assert await health_status(server.port, "") == SERVING


async def test_health_of_an_unknown_service_name_is_not_found(started: Any) -> None:
    server = await started(scripted_service(ScriptedServicer()))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await health_status(server.port, "evorec.v1.NoSuchService")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_service_and_its_methods(started: Any) -> None:
    server = await started(scripted_service(ScriptedServicer()))

    def describe() -> tuple[list[str], list[str]]:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            database = ProtoReflectionDescriptorDatabase(ch)
            services = list(database.get_services())
            file = database.FindFileContainingSymbol(SERVICE_NAME)
            return services, [m.name for s in file.service for m in s.method]

    services, methods = await asyncio.to_thread(describe)
    assert SERVICE_NAME in services
    assert "grpc.health.v1.Health" in services
    assert methods == ["NormalizeText"]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def test_metrics_count_requests_by_code_and_time_them(started: Any) -> None:
    async def reject(request: Any, context: Any) -> Any:
        raise InvalidArgument("no")

    servicer = ScriptedServicer()
    server = await started(scripted_service(servicer))
    async with channel(server.port) as ch:
        stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
        for _ in range(3):
            await stub.NormalizeText(preprocess_pb2.NormalizeTextRequest(texts=["a b"]))
        servicer.handler = reject
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.NormalizeText(preprocess_pb2.NormalizeTextRequest())

    text = await asyncio.to_thread(scrape, server.metrics_port)
    labels = f'grpc_method="NormalizeText",grpc_service="{SERVICE_NAME}",grpc_type="unary"'
    assert f"grpc_server_started_total{{{labels}}} 4.0" in text
    assert f'grpc_server_handled_total{{grpc_code="OK",{labels}}} 3.0' in text
    assert f'grpc_server_handled_total{{grpc_code="INVALID_ARGUMENT",{labels}}} 1.0' in text
    assert f"grpc_server_handling_seconds_count{{{labels}}} 4.0" in text
    assert f"grpc_server_in_flight{{{labels}}} 0.0" in text


async def test_calls_cut_by_their_deadline_or_their_caller_are_counted_so(started: Any) -> None:
    """gRPC cancels the handler of such a call; it was counted, and logged, as OK."""

    async def slow(request: Any, context: Any) -> Any:
        await asyncio.sleep(1.0)
        return preprocess_pb2.NormalizeTextResponse()

    server = await started(scripted_service(ScriptedServicer(slow)))
    request = preprocess_pb2.NormalizeTextRequest(texts=["a b"])
    async with channel(server.port) as ch:
        stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await stub.NormalizeText(request, timeout=0.2)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        call = stub.NormalizeText(request, timeout=5)
        await asyncio.sleep(0.2)
        call.cancel()
        await asyncio.sleep(1.0)  # both handlers cancelled by now

    text = await asyncio.to_thread(scrape, server.metrics_port)
    labels = f'grpc_method="NormalizeText",grpc_service="{SERVICE_NAME}",grpc_type="unary"'
    assert f'grpc_server_handled_total{{grpc_code="DEADLINE_EXCEEDED",{labels}}} 1.0' in text
    assert f'grpc_server_handled_total{{grpc_code="CANCELLED",{labels}}} 1.0' in text
    assert f'grpc_server_handled_total{{grpc_code="OK",{labels}}}' not in text
    assert f"grpc_server_in_flight{{{labels}}} 0.0" in text


async def test_domain_errors_carry_their_status_and_field_violations(started: Any) -> None:
    async def validate(request: Any, context: Any) -> Any:
        violations = Violations()
        violations.require(len(request.texts) > 0, "texts", "must not be empty")
        violations.require(request.options.max_tokens >= 0, "options.max_tokens", "must be >= 0")
        violations.raise_if_any()
        raise NotFound("text", request.texts[0])

    server = await started(scripted_service(ScriptedServicer(validate)))
    async with channel(server.port) as ch:
        stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
        bad = preprocess_pb2.NormalizeTextRequest(options=preprocess_pb2.TextOptions(max_tokens=-1))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.NormalizeText(bad)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [(v.field, v.description) for v in field_violations(raised.value)] == [
            ("texts", "must not be empty"),
            ("options.max_tokens", "must be >= 0"),
        ]

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.NormalizeText(preprocess_pb2.NormalizeTextRequest(texts=["x"]))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert raised.value.details() == "text 'x' not found"


async def test_an_uncaught_exception_is_internal_and_logged_not_leaked(
    started: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash(request: Any, context: Any) -> Any:
        raise KeyError("secret-internal-detail")

    server = await started(scripted_service(ScriptedServicer(crash)))
    async with channel(server.port) as ch:
        stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
        with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.NormalizeText(
                preprocess_pb2.NormalizeTextRequest(), metadata=(("x-request-id", "req-42"),)
            )
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == "internal error (request id req-42)"
    assert "secret" not in raised.value.details()
    record = next(r for r in caplog.records if r.name == "evorec.rpc")
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError


async def test_a_message_over_the_size_limit_is_resource_exhausted(
    monkeypatch: pytest.MonkeyPatch, settings: Any, started: Any
) -> None:
    monkeypatch.setenv("EVOREC_SERVER__MAX_RECEIVE_MESSAGE_BYTES", "2048")
    small = load_settings()
    from evorec.platform.server import start_server

    server = await start_server(
        scripted_service(ScriptedServicer()), settings.preprocess, small.server
    )
    try:
        await server.ready()
        async with channel(server.port) as ch:
            stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
            ok = await stub.NormalizeText(preprocess_pb2.NormalizeTextRequest(texts=["a" * 1000]))
            assert len(ok.results) == 1
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.NormalizeText(preprocess_pb2.NormalizeTextRequest(texts=["a" * 4000]))
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await server.shutdown()


async def test_an_idle_server_refuses_none_of_a_burst_of_64_calls(
    settings: Any,
) -> None:
    """gRPC's server takes calls from core one at a time, so a burst waits there for a moment:
    the default bound of that queue (server.max_pending_soft) leaves room for 64 at once."""

    async def quick(request: Any, context: Any) -> Any:
        await asyncio.sleep(0.01)
        return preprocess_pb2.NormalizeTextResponse()

    async with (
        serving(quick, settings.preprocess, settings.server) as server,
        channel(server.port) as ch,
    ):
        stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
        request = preprocess_pb2.NormalizeTextRequest(texts=["a"])
        await stub.NormalizeText(request, timeout=10)
        answers = await asyncio.gather(
            *(stub.NormalizeText(request, timeout=10) for _ in range(64))
        )
        assert len(answers) == 64


async def test_calls_the_process_cannot_take_wait_in_grpc_core_and_are_refused_there(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """While the server's event loop is busy (here: blocked for 1 s), arriving calls wait in
    gRPC core's queue; beyond `max_pending` (1) of them, core refuses the others at once,
    without the event loop; the one that waited is answered."""
    monkeypatch.setenv("EVOREC_SERVER__MAX_PENDING_SOFT", "0")
    monkeypatch.setenv("EVOREC_SERVER__MAX_PENDING", "1")
    small_queue = load_settings()
    blocked = threading.Event()

    async def blocking(request: Any, context: Any) -> Any:
        if not blocked.is_set():
            blocked.set()
            time.sleep(1.0)  # noqa: ASYNC251 -- on purpose: the loop takes no calls meanwhile
        return preprocess_pb2.NormalizeTextResponse()

    outcomes: list[tuple[str, float]] = []

    def four_calls_while_blocked(port: int) -> None:
        blocked.wait(10)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
            request = preprocess_pb2.NormalizeTextRequest(texts=["a"])
            started = time.monotonic()
            done = threading.Semaphore(0)

            def finished(future: Any) -> None:
                outcomes.append((future.code().name, time.monotonic() - started))
                done.release()

            for _ in range(4):
                stub.NormalizeText.future(request, timeout=10).add_done_callback(finished)
            for _ in range(4):
                done.acquire(timeout=20)

    async with serving(blocking, settings.preprocess, small_queue.server) as server:
        caller = threading.Thread(target=four_calls_while_blocked, args=(server.port,))
        caller.start()
        async with channel(server.port) as ch:
            stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
            await stub.NormalizeText(preprocess_pb2.NormalizeTextRequest(texts=["a"]), timeout=10)
        await asyncio.to_thread(caller.join, 20)
    # One call meets the event loop's standing request, one waits in core's queue, and the
    # queue being full, core refuses the other two while the loop is still blocked. gRPC core
    # decides RESOURCE_EXHAUSTED but resets the stream, which the caller sees as CANCELLED
    # (grpcio 1.85).
    assert sorted(code for code, _ in outcomes) == ["CANCELLED", "CANCELLED", "OK", "OK"]
    assert all(took < 0.5 for code, took in outcomes if code != "OK")


async def test_beyond_its_slots_a_server_sheds_what_it_cannot_answer_in_time(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """One slot, calls of 0.4 s: of four calls sent at once with 0.6 s deadlines, the first
    is answered, and the ones that could not finish in time are refused RESOURCE_EXHAUSTED
    long before their deadline, counted by reason; a call after the burst is answered."""
    monkeypatch.setenv("EVOREC_SERVER__MAX_IN_PROGRESS", "1")
    one_slot = load_settings()

    async def slow(request: Any, context: Any) -> Any:
        await asyncio.sleep(0.4)
        return preprocess_pb2.NormalizeTextResponse()

    async with serving(slow, settings.preprocess, one_slot.server) as server:
        async with channel(server.port) as ch:
            stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
            request = preprocess_pb2.NormalizeTextRequest(texts=["a"])
            await stub.NormalizeText(request, timeout=5)  # the method's typical time: 0.4 s

            async def call() -> tuple[grpc.StatusCode, float]:
                started = time.monotonic()
                try:
                    await stub.NormalizeText(request, timeout=0.6)
                    return grpc.StatusCode.OK, time.monotonic() - started
                except grpc.aio.AioRpcError as error:
                    return error.code(), time.monotonic() - started

            outcomes = await asyncio.gather(*(call() for _ in range(4)))
            codes = sorted(code.name for code, _ in outcomes)
            assert codes == ["OK", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]
            shed_after = [took for code, took in outcomes if code != grpc.StatusCode.OK]
            assert max(shed_after) < 0.5  # refused once 0.6 s - waited < 0.4 s, not at 0.6
            assert (await call())[0] == grpc.StatusCode.OK
        text = await asyncio.to_thread(scrape, server.metrics_port)
        labels = f'grpc_method="NormalizeText",grpc_service="{SERVICE_NAME}",grpc_type="unary"'
        assert f'evorec_admission_shed_total{{{labels},reason="deadline"}} 3.0' in text
        assert f'grpc_server_handled_total{{grpc_code="RESOURCE_EXHAUSTED",{labels}}} 3.0' in text


def test_sigterm_lets_the_call_in_flight_finish_then_exits() -> None:
    port = free_port()
    env = {
        **os.environ,
        "EVOREC_PREPROCESS__PORT": str(port),
        "EVOREC_PREPROCESS__METRICS_PORT": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.slow_server", "1.5"], cwd=ROOT, env=env
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            grpc.channel_ready_future(ch).result(timeout=30)
            stub = preprocess_pb2_grpc.PreprocessServiceStub(ch)
            call = stub.NormalizeText.future(
                preprocess_pb2.NormalizeTextRequest(texts=["still here"]), timeout=20
            )
            time.sleep(0.5)  # the call is now sleeping inside the handler
            process.send_signal(signal.SIGTERM)
            assert [list(r.tokens) for r in call.result().results] == [["still", "here"]]
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
        process.wait()
