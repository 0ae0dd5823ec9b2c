"""Three instances on one PostgreSQL and one Redis: alert latency, and dashboard queries under load.

Three ``python -m digitalme serve`` processes (one uvicorn worker each) share a
PostgreSQL database (host data and telemetry store) and a Redis server, both
started here from the installed binaries (``tests/servers.py``). Settings are
the defaults except the connection strings, the Slack stand-in of
:mod:`bench_alert_latency` and its threshold rule (the count of requests to
unknown paths over 10 s above 0, so that one request breaches it and the alert
resolves at the next bucket boundary).

* **Alert latency** (``--trials``): one ``GET /bench-breach-N`` (404) sent to an
  instance that does *not* lead, at a random offset into a 10 s bucket, timed
  from just before the request to the Slack POST's arrival. The path: that
  instance folds the request (aggregation tick) and flushes its buckets to
  PostgreSQL (``telemetry.flush_interval``); the leader reads the other
  instances' new buckets (``cluster.remote_poll_interval``), its engine ticks
  (``alerting.tick``), writes the alert and its delivery, and its dispatcher
  posts. Each trial waits for the resolved notice before the next.
* **The peer, side by side** (``--peer-trials``, in the same run, on the same three
  instances): Prometheus scraping their ``/metrics`` every second and evaluating
  ``increase(digitalme_http_server_duration_count{route="GET <unmatched>"}[10s]) > 0``
  every second (``for: 0s``), Alertmanager with ``group_wait: 0s`` posting to a webhook
  stand-in: the same breach (on any instance, every phase of the scrape), timed to the
  webhook's arrival. Needs ``prometheus`` and ``prometheus-alertmanager`` on ``PATH``
  (Debian packages).
* **Dashboard queries under load** (``--load-seconds``): each instance gets
  ``--rate`` requests per second (``GET /health/live`` and unknown paths,
  paced by one client thread per instance) while ``/api/metrics/dashboard``
  (1 h) and ``/api/metrics/performance`` (1 h) are timed on one instance, one
  query after the other.

As in :mod:`bench_alert_latency`, the three servers are pinned to CPU 0 and this
process (clients, Slack stand-in) to CPU 1 when there are 2 CPUs; PostgreSQL and
Redis are not pinned.

Run: ``.venv/bin/python benchmarks/bench_scale_out.py [--trials 40 --load-seconds 60 --rate 100
--peer-trials 30]`` (about 10 s per trial of each kind, plus the load phase).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from bench_alert_latency import RULE_TITLE, RULES, SlackStandIn, percentile, report, serve
from bench_request_overhead import CLIENT_CPU, free_port, machine, stop

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import PostgresServer, RedisServer  # the tests' server helpers

ADMIN_PASSWORD = "a long benchmark password"
SCRAPE_TOKEN = "benchmark-scrape-token-0123456789"
BUCKET = 10.0


def start_cluster(
    directory: Path, database: str, redis: str, slack_url: str
) -> list[tuple[Any, str]]:
    rules = directory / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES))
    settings = {
        "connection_strings": {"database": database, "telemetry_store": database, "redis": redis},
        # one client address and one admin: the limits would refuse the load and the queries
        "security": {
            "rate_limit_per_ip": "1000000/minute",
            "rate_limit_per_user": "1000000/minute",
        },
        "health": {"rate_limit_per_ip": "1000000/minute"},  # /health/live is part of the load
        "alerting": {"rule_files": [str(rules)]},
        "notifications": {"slack": {"enabled": True, "webhook_url": slack_url}},
        "metrics": {"scrape_token": SCRAPE_TOKEN},
    }
    env = {"DIGITALME_ADMIN_PASSWORD": ADMIN_PASSWORD}
    # one after the other: the first one migrates the database
    return [serve(directory / f"i{i}", settings, env) for i in range(3) if _mkdir(directory, i)]


def _mkdir(directory: Path, index: int) -> bool:
    (directory / f"i{index}").mkdir()
    return True


def admin_headers(base: str) -> dict[str, str]:
    response = httpx.post(
        f"{base}/api/auth/login",
        json={"email": "admin@localhost", "password": ADMIN_PASSWORD},
        timeout=10,
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def leader(bases: list[str], headers: dict[str, str]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for index, base in enumerate(bases):
            if httpx.get(f"{base}/api/cluster", headers=headers, timeout=5).json()["leading"]:
                return index
        time.sleep(0.2)
    raise RuntimeError("no leader within 30 s")


def alert_trials(bases: list[str], lead: int, slack: SlackStandIn, trials: int) -> list[float]:
    fired, resolved = f"🚨 Alert: {RULE_TITLE}", f"🟢 Alert Resolved: {RULE_TITLE}"
    followers = [httpx.Client(base_url=b, timeout=10) for i, b in enumerate(bases) if i != lead]
    latencies = []
    try:
        for trial in range(trials):
            now = time.time()
            at = now // BUCKET * BUCKET + random.uniform(0.5, BUCKET - 1.5)
            if at <= now:
                at += BUCKET
            time.sleep(at - now)
            seen = slack.count()
            client = followers[trial % len(followers)]
            started = time.perf_counter()
            assert client.get(f"/bench-breach-{trial}").status_code == 404
            latencies.append(slack.wait(fired, seen) - started)
            slack.wait(resolved, seen)
            print(f"  alert {trial + 1}/{trials}: {latencies[-1] * 1000:.0f} ms", file=sys.stderr)
    finally:
        for client in followers:
            client.close()
    return latencies


def load(base: str, rate: float, stop_at: float, sent: list[int]) -> None:
    """``rate`` requests per second to ``base`` until ``stop_at`` (one in ten to a 404 path);
    every answer must be 200 or that 404 (a refused request would not be load)."""
    with httpx.Client(base_url=base, timeout=10) as client:
        interval = 1.0 / rate
        next_at = time.monotonic()
        count = 0
        while next_at < stop_at:
            path = f"/load-{uuid.uuid4().hex[:6]}" if count % 10 == 0 else "/health/live"
            status = client.get(path).status_code
            assert status in (200, 404), f"{path}: {status}"
            count += 1
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        sent.append(count)


def query_under_load(
    bases: list[str], headers: dict[str, str], rate: float, seconds: float
) -> tuple[dict[str, list[float]], float]:
    stop_at = time.monotonic() + seconds
    sent: list[int] = []
    threads = [
        threading.Thread(target=load, args=(base, rate, stop_at, sent), daemon=True)
        for base in bases
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    timings: dict[str, list[float]] = {"dashboard 1h": [], "performance 1h": []}
    paths = {
        "dashboard 1h": "/api/metrics/dashboard?window=1h",
        "performance 1h": "/api/metrics/performance",
    }
    with httpx.Client(base_url=bases[0], timeout=30, headers=headers) as client:
        time.sleep(5)  # let the load reach its pace
        while time.monotonic() < stop_at:
            for name, path in paths.items():
                begun = time.perf_counter()
                response = client.get(path)
                timings[name].append(time.perf_counter() - begun)
                response.raise_for_status()
    for thread in threads:
        thread.join()
    achieved = sum(sent) / (time.monotonic() - started)
    return timings, achieved


PEER_RULE = 'sum(increase(digitalme_http_server_duration_count{route="GET <unmatched>"}[10s])) > 0'


def start_peer(directory: Path, bases: list[str], webhook: str) -> list[subprocess.Popen[bytes]]:
    """Prometheus (1 s scrapes and rule evaluations) and Alertmanager (no group wait) on
    the three instances, tuned for speed; their binaries from ``PATH`` (Debian packages)."""
    am_port, prom_port = free_port(), free_port()
    (directory / "alertmanager.yml").write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "hook",
                    "group_by": ["alertname"],
                    "group_wait": "0s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [
                    {"name": "hook", "webhook_configs": [{"url": webhook, "send_resolved": True}]}
                ],
            }
        )
    )
    (directory / "rules.yml").write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "bench",
                        "interval": "1s",
                        "rules": [{"alert": "BenchBreach", "expr": PEER_RULE, "for": "0s"}],
                    }
                ]
            }
        )
    )
    (directory / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(directory / "rules.yml")],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                },
                "scrape_configs": [
                    {
                        "job_name": "digitalme",
                        "authorization": {"credentials": SCRAPE_TOKEN},
                        "static_configs": [
                            {"targets": [base.removeprefix("http://") for base in bases]}
                        ],
                    }
                ],
            }
        )
    )
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    binaries = [shutil.which(name) for name in ("prometheus", "prometheus-alertmanager")]
    if None in binaries:
        raise RuntimeError("--peer-trials needs prometheus and prometheus-alertmanager (apt)")
    prometheus_bin, alertmanager_bin = (str(path) for path in binaries)
    alertmanager = subprocess.Popen(  # noqa: S603 (fixed argv)
        [
            alertmanager_bin,
            f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        **quiet,
    )
    prometheus = subprocess.Popen(  # noqa: S603 (fixed argv)
        [
            prometheus_bin,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'prom'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        **quiet,
    )
    return [prometheus, alertmanager]


def peer_trials(bases: list[str], hook: SlackStandIn, trials: int) -> list[float]:
    """The same breach as :func:`alert_trials`, timed to Alertmanager's webhook."""
    clients = [httpx.Client(base_url=b, timeout=10) for b in bases]
    latencies = []
    try:
        clients[0].get("/bench-warm-up")  # the series exists before the first trial
        time.sleep(15)  # scraped, and its increase is over
        for trial in range(trials):
            seen = hook.count()
            client = clients[trial % len(clients)]
            started = time.perf_counter()
            assert client.get(f"/bench-peer-{trial}").status_code == 404
            latencies.append(hook.wait("firing", seen) - started)
            hook.wait("resolved", seen)
            time.sleep(random.uniform(0.0, 1.0))  # every phase of the scrape and the rule
            print(f"  peer {trial + 1}/{trials}: {latencies[-1] * 1000:.0f} ms", file=sys.stderr)
    finally:
        for client in clients:
            client.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s per instance")
    parser.add_argument(
        "--peer-trials", type=int, default=0, help="Prometheus + Alertmanager trials (0: none)"
    )
    args = parser.parse_args()
    slack = SlackStandIn()
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-out-") as scratch,
        PostgresServer() as postgres,
        RedisServer() as redis,
    ):
        postgres.create_database("bench")
        if len(os.sched_getaffinity(0)) >= 2 and (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(0, {int(CLIENT_CPU)})  # the servers go to the other CPU
        processes = start_cluster(Path(scratch), postgres.async_url("bench"), redis.url, slack.url)
        try:
            bases = [base for _, base in processes]
            headers = admin_headers(bases[0])
            time.sleep(3.0)  # first probes, first flushes
            lead = leader(bases, headers)
            latencies = alert_trials(bases, lead, slack, args.trials)
            print(f"machine: {machine()}")
            print("three instances, PostgreSQL store, Redis backplane, default settings:")
            report("breach on a follower -> Slack", latencies, 1.5)
            if args.peer_trials:
                hook = SlackStandIn(field="status")  # Alertmanager webhook bodies
                peers = start_peer(Path(scratch), bases, hook.url)
                try:
                    peer = peer_trials(bases, hook, args.peer_trials)
                finally:
                    for process in peers:
                        stop(process)
                    hook.close()
                print("the same breach through Prometheus (1 s scrapes and evaluations) and")
                print("Alertmanager (group_wait 0s) scraping the same three instances:")
                report("breach -> Alertmanager hook", peer, 1.5)
            timings, achieved = query_under_load(bases, headers, args.rate, args.load_seconds)
        finally:
            for process, _ in processes:
                stop(process)
            slack.close()
    print(f"load: {achieved:.0f} requests/s in all (asked {3 * args.rate:.0f})")
    for name, values in timings.items():
        p50, p95 = percentile(values, 50), percentile(values, 95)
        print(
            f"{name:<16} n={len(values):<4} p50 {p50 * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms"
            f"  max {max(values) * 1000:6.1f} ms"
        )


if __name__ == "__main__":
    main()
