"""Breach to Slack: from the first breaching request to the Slack receiver getting the POST.

The real program (``python -m digitalme serve``: uvicorn, one worker) runs in a
subprocess on its embedded SQLite store with default settings, except:

* ``notifications.slack`` points at a Slack stand-in (an HTTP server in this
  process, on 127.0.0.1) that notes the time each POST arrives;
* ``alerting.rule_files`` adds one threshold rule without min duration, so
  that the first breaching request breaches it: the count of requests to
  unknown paths (route ``GET <unmatched>``) over 10 s above 0, Medium (Slack);
* ``security.trusted_proxies`` is 127.0.0.1, so each security trial can come
  from its own client address (``X-Forwarded-For``) and open its own alert.

Two kinds of trials, timed in this process (``perf_counter`` from just before
the request is sent to the arrival of the matching POST):

* **threshold rule**: ``GET /bench-breach-N`` (answered 404). The engine sees
  the request on its next tick (``alerting.tick``, 250 ms); the alert fires,
  its delivery is written to the outbox and the dispatcher, woken by the
  event, posts to Slack. A 10 s window over 10 s buckets holds only the
  current bucket, so the alert resolves at the next bucket boundary; each trial
  waits for that resolved notice, then sends its request at a random offset
  into a bucket, so the trials sample every phase of the tick.
* **critical security event**: a SQL injection attempt from a new address.
  No tick is involved: the event raises a Critical alert as it is recorded.

The server is pinned to CPU 0 and this process (client and receiver) to CPU 1
when ``taskset`` exists and there are 2 CPUs.

Run: ``.venv/bin/python benchmarks/bench_alert_latency.py [--trials 50 --security-trials 100]``
(about 10 s per threshold trial: 9 minutes at the defaults).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from bench_request_overhead import CLIENT_CPU, SERVER_CPU, free_port, machine, pinned, stop

SLACK_PATH = "/services/T0BENCH/B0BENCH/benchmarktoken"
RULE_TITLE = "Requests to unknown paths"
BUCKET = 10.0  # telemetry.bucket_seconds (default)
START_TIMEOUT = 60.0
TRIAL_TIMEOUT = 30.0
RULES = {
    "rules": [
        {
            "id": "bench_breach",
            "name": RULE_TITLE,
            "metric_name": "http.server.duration",
            "filters": {"route": "GET <unmatched>"},
            "aggregation": "count",
            "operator": ">",
            "threshold": 0,
            "evaluation_window": "10s",
            "severity": "Medium",
            "category": "Availability",
            "title_template": RULE_TITLE,
        }
    ]
}


class SlackStandIn:
    """Records ``(arrival perf_counter, text)`` of every POST; answers ``200 ok``.

    ``field`` is the JSON body's field recorded: Slack's ``text``, or ``status``
    (``firing`` / ``resolved``) for an Alertmanager webhook.
    """

    def __init__(self, field: str = "text") -> None:
        self.posts: list[tuple[float, str]] = []
        self._changed = threading.Condition()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                arrived = time.perf_counter()
                with stand_in._changed:
                    stand_in.posts.append((arrived, json.loads(body)[field]))
                    stand_in._changed.notify_all()
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{SLACK_PATH}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait(self, text: str, after: int) -> float:
        """The arrival time of the first POST with ``text`` among those after index ``after``."""
        deadline = time.monotonic() + TRIAL_TIMEOUT
        with self._changed:
            while True:
                for arrived, posted in self.posts[after:]:
                    if posted == text:
                        return arrived
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"no Slack post {text!r} within {TRIAL_TIMEOUT:g} s")
                self._changed.wait(remaining)

    def count(self) -> int:
        with self._changed:
            return len(self.posts)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_server(directory: Path, slack_url: str) -> tuple[subprocess.Popen[bytes], str]:
    rules = directory / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES))
    return serve(
        directory,
        {
            "security": {"trusted_proxies": ["127.0.0.1"]},
            "alerting": {"rule_files": [str(rules)]},
            "notifications": {"slack": {"enabled": True, "webhook_url": slack_url}},
        },
    )


def serve(
    directory: Path, settings: dict[str, Any], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``digitalme serve`` on CPU 0 with ``settings`` (YAML), data under ``directory``."""
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({"server": {"data_dir": str(directory / "var")}, **settings}))
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIGITALME")}
    environment.update(env or {})
    environment["DIGITALME_CONFIG"] = str(config)
    command = [sys.executable, "-m", "digitalme", "serve", "--port", str(port)]
    process = subprocess.Popen(  # noqa: S603 (fixed argv)
        pinned(SERVER_CPU, command),
        cwd=directory,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.get(f"{base}/health/live", timeout=1)
            return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    stop(process)
    raise RuntimeError("server did not answer in time")


def threshold_trials(client: httpx.Client, slack: SlackStandIn, trials: int) -> list[float]:
    fired, resolved = f"🚨 Alert: {RULE_TITLE}", f"🟢 Alert Resolved: {RULE_TITLE}"
    latencies = []
    for trial in range(trials):
        # At a random offset into a bucket after the one of the previous breach (whose
        # alert resolved at that bucket's end), clear of the boundary's own tick.
        now = time.time()
        start = now // BUCKET * BUCKET
        at = start + random.uniform(0.5, BUCKET - 1.5)
        if at <= now:
            at += BUCKET
        time.sleep(at - now)
        seen = slack.count()
        started = time.perf_counter()
        response = client.get(f"/bench-breach-{trial}")
        assert response.status_code == 404, response.status_code
        latencies.append(slack.wait(fired, seen) - started)
        slack.wait(resolved, seen)
        progress("threshold", trial, trials, latencies[-1])
    return latencies


def security_trials(client: httpx.Client, slack: SlackStandIn, trials: int) -> list[float]:
    latencies = []
    for trial in range(trials):
        source = f"10.{trial // 250}.{trial % 250}.7"
        seen = slack.count()
        started = time.perf_counter()
        response = client.get(
            "/api/personality",
            params={"name": "x' OR '1'='1"},
            headers={"x-forwarded-for": source},
        )
        assert response.status_code == 400, response.status_code
        latencies.append(slack.wait(f"🚨 Alert: SqlInjection from {source}", seen) - started)
        progress("security", trial, trials, latencies[-1])
        time.sleep(random.uniform(0.05, 0.25))
    return latencies


def progress(kind: str, trial: int, trials: int, latency: float) -> None:
    print(f"  {kind} {trial + 1}/{trials}: {latency * 1000:.0f} ms", file=sys.stderr)


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def report(name: str, latencies: list[float], target: float) -> None:
    if not latencies:
        return
    p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
    verdict = "met" if p99 <= target else "NOT met"
    print(
        f"{name:<26} n={len(latencies):<4} p50 {p50 * 1000:6.0f} ms  p95 {p95 * 1000:6.0f} ms  "
        f"p99 {p99 * 1000:6.0f} ms  max {max(latencies) * 1000:6.0f} ms  "
        f"mean {statistics.fmean(latencies) * 1000:5.0f} ms  "
        f"(target p99 <= {target * 1000:.0f} ms: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50, help="threshold-rule trials")
    parser.add_argument("--security-trials", type=int, default=100)
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) >= 2 and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    slack = SlackStandIn()
    with tempfile.TemporaryDirectory(prefix="bench-alert-latency-") as scratch:
        process, base = start_server(Path(scratch), slack.url)
        try:
            with httpx.Client(base_url=base, timeout=10) as client:
                time.sleep(2.0)  # let start-up work (first probes, first ticks) settle
                security = security_trials(client, slack, args.security_trials)
                threshold = threshold_trials(client, slack, args.trials)
        finally:
            stop(process)
            slack.close()
    print(f"machine: {machine()}")
    print("breach to Slack POST, default settings (tick 250 ms), SQLite store:")
    report("threshold rule", threshold, 0.5)
    report("critical security event", security, 0.1)


if __name__ == "__main__":
    main()
