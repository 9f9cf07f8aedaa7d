"""What one call costs a Python gRPC server, and what evorec's server runtime adds to it.

An echo RPC (100 bytes in, the same out, no work) is served from a process of its own in
three ways, and called from this process over loopback by `--callers` concurrent callers on
one connection, 1 s deadline each:

- gRPC alone: `grpc.aio.server` with evorec's channel arguments, the echo handler only;
- evorec's runtime: `evorec.platform.server.start_server`, as every service runs (the server
  interceptor with request ids, metrics and admission; health, reflection, the metrics
  endpoint), logging at WARNING, so that the per-call access log is off;
- the same with the access log on (INFO, JSON lines), the services' default; the lines go to
  /dev/null, so what is counted is making them, not a terminal or a collector taking them.

For each, the server process's CPU time per call (user + system of all its threads, gRPC
core's included, from /proc, so that what else runs on the machine changes it little) and
the calls answered per second. The variants run in turn, `--rounds` times, each round on
fresh servers. Every evorec service pays the first figure and then some per call. What the
runtime adds includes gRPC's own per-call work for what the runtime turns on (its limit on
concurrent calls, the interceptor pipeline, health and reflection beside the service).

Then the server interceptor's own work per call, in this process and without gRPC: a call
through `intercept_service` and the wrapped handler (admission, metrics, the request id and
deadline, the access log off), with a stand-in for the call's context; the least of 7
repeats of 20,000 calls, which moves far less from run to run than the figures above.

    .venv/bin/python scripts/bench_server_overhead.py [--calls 20000] [--callers 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc

from evorec.platform.admission import Admission
from evorec.platform.config import Endpoint, ServerSettings
from evorec.platform.interceptors import ServerInterceptor
from evorec.platform.logs import configure_logging
from evorec.platform.metrics import RpcMetrics
from evorec.platform.server import GrpcService, server_options, start_server

SERVICE = "evorec.bench.Echo"
METHOD = f"/{SERVICE}/Echo"
PAYLOAD = b"x" * 100
VARIANTS = {
    "grpc": "gRPC alone",
    "evorec": "evorec's runtime, access log off (WARNING)",
    "evorec-info": "evorec's runtime, access log on (INFO, JSON)",
}


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


def _register(server: grpc.aio.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler}),)
    )


async def serve(variant: str) -> None:
    """Serves the echo RPC the `variant` way; prints its port, then runs until stdin closes."""
    settings = ServerSettings()
    if variant == "grpc":
        server = grpc.aio.server(options=server_options(settings))
        _register(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
    else:
        configure_logging("echo", "INFO" if variant == "evorec-info" else "WARNING", "json")
        running = await start_server(
            GrpcService(SERVICE, _register), Endpoint(port=0, metrics_port=0), settings
        )
        await running.ready()
        port = running.port
    print(port, flush=True)
    await asyncio.to_thread(sys.stdin.read)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(port: int, calls: int, callers: int) -> None:
    """`calls` echo calls from `callers` callers, one connection; any failure ends the run."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = channel.unary_unary(METHOD)

        async def caller(count: int) -> None:
            for _ in range(count):
                await echo(PAYLOAD, timeout=1.0)

        share, extra = divmod(calls, callers)
        await asyncio.gather(*(caller(share + (i < extra)) for i in range(callers)))


def measure(variant: str, calls: int, callers: int) -> tuple[float, float]:
    """Server CPU microseconds per call and calls answered per second, on a fresh server."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, __file__, "--serve", variant],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    ) as server:
        assert server.stdout is not None
        assert server.stdin is not None
        line = server.stdout.readline()
        if not line.strip():
            raise SystemExit(f"the {variant} server did not start")
        port = int(line)
        asyncio.run(load(port, max(calls // 10, callers), callers))  # warm up
        cpu_before, began = cpu_seconds(server.pid), time.perf_counter()
        asyncio.run(load(port, calls, callers))
        elapsed, cpu = time.perf_counter() - began, cpu_seconds(server.pid) - cpu_before
        server.stdin.close()
    return cpu / calls * 1e6, calls / elapsed


class _StandInContext:
    """What the interceptor reads of a call's context, for a call with a 1 s deadline."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> float:
        return 1.0


class _Details:
    """The call details gRPC gives an interceptor."""

    method = METHOD
    invocation_metadata = ()


async def interceptor_microseconds(calls: int = 20_000, repeats: int = 7) -> float:
    """The server interceptor's own work per call; see the module docstring."""
    configure_logging("echo", "WARNING", "json")
    settings = ServerSettings()
    interceptor = ServerInterceptor(
        RpcMetrics.create(),
        Admission(
            settings.max_in_progress,
            settings.max_waiting,
            settings.queue_target_s,
            settings.queue_interval_s,
            settings.standing_in_progress,
        ),
    )
    handler = grpc.unary_unary_rpc_method_handler(_echo)

    async def continuation(details: object) -> grpc.RpcMethodHandler[bytes, bytes]:
        return handler

    context, details = _StandInContext(), _Details()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(calls):
            wrapped = await interceptor.intercept_service(continuation, details)  # type: ignore[arg-type]
            await wrapped.unary_unary(PAYLOAD, context)
        times.append((time.perf_counter() - began) / calls * 1e6)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    results: dict[str, list[tuple[float, float]]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            results[variant].append(measure(variant, args.calls, args.callers))
    print(
        f"echo RPC, {args.calls:,} calls per run, {args.callers} callers on one connection, "
        f"{args.rounds} run(s) of each\n"
    )
    print("| server | CPU per call (µs), each run | calls/s, each run |")
    print("|---|---|---|")
    for variant, label in VARIANTS.items():
        cpu = ", ".join(f"{us:.0f}" for us, _ in results[variant])
        rate = ", ".join(f"{per_s:,.0f}" for _, per_s in results[variant])
        print(f"| {label} | {cpu} | {rate} |")
    microseconds = asyncio.run(interceptor_microseconds())
    print(f"\nthe server interceptor's own work per call, in-process: {microseconds:.1f} µs")


if __name__ == "__main__":
    main()
