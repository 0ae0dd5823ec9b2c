"""Request overhead: requests/s of a trivial FastAPI endpoint with and without monitoring.

Measures, in one run, on the same machine, with the same server code and the same
load client, the throughput of ``GET /ping`` (a small JSON body) served by uvicorn
(one worker, no access log, uvloop + httptools for every configuration) in four
configurations:

- ``none``: no monitoring;
- ``ours``: ``TelemetryMiddleware`` with a real ``Monitoring.from_settings`` (a
  migrated temp SQLite telemetry store, default telemetry settings, started and
  stopped by ``monitoring.wrap_lifespan``);
- ``opentelemetry``: ``FastAPIInstrumentor.instrument_app`` with an SDK
  ``TracerProvider`` + ``BatchSpanProcessor`` to a no-op exporter, and a
  ``MeterProvider`` with an in-memory reader;
- ``prometheus``: ``prometheus_fastapi_instrumentator.Instrumentator().instrument(app)``.

Each server is a subprocess on a free port of 127.0.0.1, pinned to CPU 0 when
``taskset`` is available; the load client (``wrk`` if installed, otherwise a
raw-asyncio keep-alive client in its own process) is pinned to CPU 1. Per
run: a fresh server, a warm-up, then ``--seconds`` seconds of load; ``--runs`` rounds
interleave the configurations (so drifting background load hits them all alike); the
median requests/s is reported, and from it the time each monitoring adds per request
(``1/rps_config - 1/rps_none``).

Targets (issue 3): ours keeps at least 0.85x the throughput of ``none``; the time ours
adds is at most 0.25x what OpenTelemetry adds and at most 1.5x what
prometheus-fastapi-instrumentator adds.

Run: ``.venv/bin/python benchmarks/bench_request_overhead.py`` (needs the ``bench``
extra; ``apt-get install wrk`` for the preferred load client).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CONFIGS = ("none", "ours", "opentelemetry", "prometheus")
EXTRA_CONFIGS = ("ours-unsampled", "ours-no-store")
LABELS = {
    "none": "no monitoring",
    "ours": "ours (TelemetryMiddleware + Monitoring)",
    "opentelemetry": "opentelemetry-instrumentation-fastapi",
    "prometheus": "prometheus-fastapi-instrumentator",
    "ours-unsampled": "ours, 100% sampling, adaptive off (info)",
    "ours-no-store": "ours without the SQLite store sink (info)",
}
SERVER_CPU = "0"
CLIENT_CPU = "1"
LOOP = "uvloop"
HTTP = "httptools"


# -- the server (runs in the subprocess) ----------------------------------------------


def build_app(config: str, data_dir: Path, profile: Path | None = None) -> Any:
    """The same trivial app for every configuration, instrumented as ``config`` says.

    With ``profile``, the server runs under cProfile and writes its statistics there at
    shutdown (from the lifespan: uvicorn re-raises SIGTERM after it, so atexit is too late).
    """
    import cProfile

    from fastapi import FastAPI

    profiler = cProfile.Profile() if profile is not None else None

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        if profiler is not None:
            profiler.enable()
        yield
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(profile)

    if config.startswith("ours"):
        from digitalme.monitoring.facade import Monitoring
        from digitalme.monitoring.storage import upgrade
        from digitalme.monitoring.telemetry.instrumentation.asgi import TelemetryMiddleware
        from digitalme.settings import load_settings

        telemetry: dict[str, Any] = {}
        if config == "ours-unsampled":
            telemetry = {"enable_adaptive_sampling": False, "sampling_percentage": 100.0}
        settings = load_settings(server={"data_dir": data_dir}, telemetry=telemetry)
        if config == "ours-no-store":
            monitoring = Monitoring(settings)
        else:
            upgrade(settings.telemetry_store_url)
            monitoring = Monitoring.from_settings(settings)
        app = FastAPI(lifespan=monitoring.wrap_lifespan(lifespan))
        app.add_middleware(TelemetryMiddleware, client=monitoring.client, clock=monitoring.clock)
    else:
        app = FastAPI(lifespan=lifespan)

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    if config == "opentelemetry":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class NoOpExporter(SpanExporter):
            def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(NoOpExporter()))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
    elif config == "prometheus":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(app)
    return app


def serve(config: str, port: int, data_dir: Path, profile: Path | None = None) -> None:
    import logging

    import structlog
    import uvicorn

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    app = build_app(config, data_dir, profile)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        workers=1,
        loop=LOOP,
        http=HTTP,
        access_log=False,
        log_level="warning",
        lifespan="on",
    )


# -- the fallback load client (runs in its own process) ------------------------------


async def _connection(port: int, deadline: float, counts: list[int]) -> None:
    request = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            await reader.readexactly(int(match.group(1)) if match else 0)
            counts[0 if head.startswith(b"HTTP/1.1 200") else 1] += 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _load(port: int, seconds: float, connections: int) -> tuple[int, int, float]:
    counts = [0, 0]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_connection(port, deadline, counts) for _ in range(connections)))
    return counts[0], counts[1], time.perf_counter() - started


def client_main(port: int, seconds: float, connections: int) -> None:
    ok, errors, elapsed = asyncio.run(_load(port, seconds, connections))
    print(f"Requests/sec: {ok / elapsed:.2f}")
    print(f"Non-2xx or 3xx responses: {errors}")


# -- the driver ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cpu: str, command: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    if taskset is None or (os.cpu_count() or 1) < 2:
        return command
    return [taskset, "-c", cpu, *command]


def wait_until_up(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/ping"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not answer in time")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def load(port: int, seconds: float, connections: int) -> tuple[float, int]:
    """One run of the load client; requests/s and non-2xx responses."""
    wrk = shutil.which("wrk")
    if wrk is not None:
        command = [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"http://127.0.0.1:{port}/ping",
        ]
    else:
        command = [sys.executable, __file__, "--client", str(port)]
        command += ["--seconds", str(seconds), "--connections", str(connections)]
    output = subprocess.run(  # noqa: S603 (fixed argv)
        pinned(CLIENT_CPU, command), capture_output=True, text=True, check=True
    ).stdout
    rps = re.search(r"Requests/sec:\s*([\d.]+)", output)
    if rps is None:
        raise RuntimeError(f"cannot read the load client's output:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    socket_errors = re.search(r"Socket errors:.*", output)
    if socket_errors is not None:
        print(f"    wrk: {socket_errors.group(0)}")
    return float(rps.group(1)), int(errors.group(1)) if errors else 0


def measure(config: str, args: argparse.Namespace) -> float:
    """One fresh server for ``config``: warm-up, then one run; its requests/s."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{config}-") as data_dir:
        port = free_port()
        command = [sys.executable, __file__, "--serve", config, "--port", str(port)]
        command += ["--data-dir", data_dir]
        process = subprocess.Popen(pinned(SERVER_CPU, command))  # noqa: S603 (fixed argv)
        try:
            wait_until_up(port, process)
            load(port, args.warmup, args.connections)
            rps, errors = load(port, args.seconds, args.connections)
            if errors:
                print(f"    {config}: {errors} non-2xx responses")
        finally:
            stop(process)
    return rps


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{now}; {os.cpu_count()} CPUs ({cpu}); Python {platform.python_version()}"


def report(results: dict[str, tuple[float, list[float]]], args: argparse.Namespace) -> None:
    client = "wrk" if shutil.which("wrk") else "asyncio keep-alive client (wrk not found)"
    pinning = "server on CPU 0, client on CPU 1" if shutil.which("taskset") else "not pinned"
    print(machine())
    print(
        f"uvicorn 1 worker, loop {LOOP}, http {HTTP}, no access log; load: {client}, "
        f"{args.connections} connections; {pinning}; fresh server + {args.warmup:g} s warm-up "
        f"per run, median of {args.runs} interleaved runs of {args.seconds:g} s"
    )
    base = results["none"][0]
    added: dict[str, float] = {}
    print(f"{'configuration':44s} {'req/s':>9s} {'x none':>7s} {'adds/req':>10s}   runs")
    for config, (rps, runs) in results.items():
        added[config] = (1 / rps - 1 / base) * 1e6
        shown = ", ".join(f"{r:.0f}" for r in runs)
        extra = "" if config == "none" else f"{added[config]:7.1f} us"
        print(f"{LABELS[config]:44s} {rps:9.0f} {rps / base:6.2f}x {extra:>10s}   [{shown}]")
    ours = results["ours"][0] / base
    versus_otel = added["ours"] / added["opentelemetry"]
    versus_prom = added["ours"] / added["prometheus"]
    print("targets (issue 3):")
    print(
        f"  ours throughput / none         = {ours:.2f}x (target >= 0.85x): {verdict(ours >= 0.85)}"
    )
    print(
        f"  ours added / OpenTelemetry add = {versus_otel:.2f}x (target <= 0.25x): "
        f"{verdict(versus_otel <= 0.25)}"
    )
    print(
        f"  ours added / prometheus added  = {versus_prom:.2f}x (target <= 1.5x): "
        f"{verdict(versus_prom <= 1.5)}"
    )


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--with-variants",
        action="store_true",
        help="also measure ours with 100%% sampling and ours without the store (information)",
    )
    parser.add_argument("--serve", choices=CONFIGS + EXTRA_CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.port, args.data_dir, args.profile)
        return
    if args.client is not None:
        client_main(args.client, args.seconds, args.connections)
        return
    configs = CONFIGS + (EXTRA_CONFIGS if args.with_variants else ())
    # Rounds interleave the configurations, so a change in background load hits them all.
    runs: dict[str, list[float]] = {config: [] for config in configs}
    for round_number in range(1, args.runs + 1):
        for config in configs:
            runs[config].append(measure(config, args))
            print(f"  round {round_number}: {config} {runs[config][-1]:.0f} req/s", flush=True)
    results = {config: (statistics.median(values), values) for config, values in runs.items()}
    report(results, args)


if __name__ == "__main__":
    main()
