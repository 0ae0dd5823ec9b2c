"""Health endpoints under load: requests/s and p99 of ``/health/live`` and a cached ``/health``.

The whole DigitalMe app (``create_app``: guard, telemetry middleware, the host's
database and Claude checks, the built-in telemetry-store and process checks,
the background prober on its default 10 s interval) is served by uvicorn in a
subprocess (one worker, uvloop + httptools, no access log), on migrated SQLite
files in a temporary data directory, with default settings except the health
endpoints' own rate limit, which is switched off so that the load is measured
rather than refused.

``/health/live`` touches no dependency. ``/health`` is served from the latest
results while they are younger than ``health.cache_seconds`` (default 5 s), so
over a run of N seconds the checks themselves run about N / 5 times, whatever
the load; the server reports how many check runs it made. The Claude API is not
configured, so ``/health`` answers 200 "Degraded" (the Claude check says "not
configured" without any network call).

The load client is ``wrk`` (``--latency``, Lua-free) pinned to CPU 1, the server
to CPU 0 (when ``taskset`` exists and there are 2 CPUs); a warm-up precedes each
measured run and the median of ``--runs`` runs is reported.

Run: ``.venv/bin/python benchmarks/bench_health.py [--seconds 10 --runs 3 --connections 32]``
(needs ``wrk``: ``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench_request_overhead import CLIENT_CPU, HTTP, LOOP, SERVER_CPU, free_port, machine, pinned
from bench_request_overhead import stop as stop_server

ENDPOINTS = ("/health/live", "/health")
RUNS_FILE = "check-runs.txt"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


# -- the server (runs in the subprocess) ----------------------------------------------


def serve(port: int, data_dir: Path) -> None:
    import logging

    import structlog
    import uvicorn

    from digitalme.app import create_app
    from digitalme.host.migrate import upgrade
    from digitalme.monitoring.storage import upgrade as upgrade_store
    from digitalme.settings import load_settings

    # Errors only: the expected "claude-api Degraded" status change is not news here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    settings = load_settings(server={"data_dir": data_dir}, health={"rate_limit_per_ip": ""})
    upgrade(settings.database_url)
    upgrade_store(settings.telemetry_store_url)
    app = create_app(settings)
    health = app.state.monitoring.health
    lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def reporting(application: Any) -> AsyncIterator[Any]:
        # Written at shutdown from the lifespan: uvicorn re-raises SIGTERM after it.
        async with lifespan(application) as state:
            yield state
        names = ", ".join(health.registry.names())
        (data_dir / RUNS_FILE).write_text(f"{health.runner.runs} check runs ({names})")

    app.router.lifespan_context = reporting
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


# -- the driver ------------------------------------------------------------------------


def wait_until_up(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not answer in time")


def wrk(port: int, path: str, seconds: float, connections: int) -> tuple[float, float, int]:
    """One wrk run: requests/s, p99 latency in ms, non-2xx responses."""
    executable = shutil.which("wrk")
    if executable is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    command = [executable, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    output = subprocess.run(  # noqa: S603 (fixed argv)
        pinned(CLIENT_CPU, [*command, f"http://127.0.0.1:{port}{path}"]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s*([\d.]+)", output)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if rps is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    return (
        float(rps.group(1)),
        float(p99.group(1)) * _UNITS[p99.group(2)],
        int(errors.group(1)) if errors else 0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.data_dir)
        return

    results: dict[str, list[tuple[float, float, int]]] = {path: [] for path in ENDPOINTS}
    with tempfile.TemporaryDirectory(prefix="bench-health-") as directory:
        data_dir = Path(directory)
        port = free_port()
        command = [sys.executable, __file__, "--serve", "--port", str(port)]
        command += ["--data-dir", str(data_dir)]
        started = time.monotonic()
        process = subprocess.Popen(pinned(SERVER_CPU, command))  # noqa: S603 (fixed argv)
        try:
            wait_until_up(port, process)
            for round_number in range(1, args.runs + 1):
                for path in ENDPOINTS:
                    wrk(port, path, args.warmup, args.connections)
                    results[path].append(wrk(port, path, args.seconds, args.connections))
                    rps, p99, errors = results[path][-1]
                    print(
                        f"  round {round_number}: {path:13s} {rps:8.0f} req/s  p99 {p99:6.2f} ms"
                        f"  non-2xx {errors}",
                        flush=True,
                    )
        finally:
            stop_server(process)
        served_seconds = time.monotonic() - started
        runs_file = data_dir / RUNS_FILE
        check_runs = runs_file.read_text() if runs_file.exists() else "not reported"

    pinning = "server on CPU 0, client on CPU 1" if shutil.which("taskset") else "not pinned"
    print(machine())
    print(
        f"uvicorn 1 worker, loop {LOOP}, http {HTTP}, no access log; wrk -t1 "
        f"-c{args.connections} --latency; {pinning}; {args.warmup:g} s warm-up before each "
        f"run; median of {args.runs} runs of {args.seconds:g} s"
    )
    print(f"{'endpoint':14s} {'req/s':>9s} {'p99 ms':>8s} {'non-2xx':>8s}   runs (req/s)")
    for path, runs in results.items():
        rps = statistics.median(r for r, _, _ in runs)
        p99 = statistics.median(p for _, p, _ in runs)
        errors = sum(e for _, _, e in runs)
        shown = ", ".join(f"{r:.0f}" for r, _, _ in runs)
        print(f"{path:14s} {rps:9.0f} {p99:8.2f} {errors:8d}   [{shown}]")
    print(f"in the server, over {served_seconds:.0f} s of serving: {check_runs}")


if __name__ == "__main__":
    main()
