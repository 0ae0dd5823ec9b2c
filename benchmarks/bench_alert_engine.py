"""Alert engine cost per evaluation tick: 200 rules over 1,000 series (issue 5, item 8).

Builds the real ``AlertEngine`` with an in-memory alert store over a live ``Aggregator``
holding 1,000 series of ``http.server.duration`` (50 routes x 20 status codes) with 15
minutes of 10 s buckets, and 200 rules (percentiles, averages, counts, rates and ratios,
half of them grouped by route), then times ``engine.evaluate`` tick after tick on a fake
clock advancing 250 ms per tick while 20 series receive new values each tick. Prints the
first tick, the median / p95 / max of steady ticks, the ticks where a 10 s bucket closes,
and apart from them the ticks during which Python ran a full (generation 2) garbage
collection, which walks the whole heap (90,000 live buckets here) whoever triggered it.

The tick must fit well inside the default 250 ms aggregation tick on one core.

Run: ``.venv/bin/python benchmarks/bench_alert_engine.py [--ticks 400]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import random
import statistics
import time
from datetime import UTC, datetime

from digitalme.monitoring.alerts import AlertEngine, InMemoryAlertStore, validate_rule
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.telemetry.sinks import SeriesKey
from digitalme.monitoring.testing import FakeClock

METRIC = "http.server.duration"
ROUTES = [f"GET /api/r{n}" for n in range(50)]
STATUSES = [str(code) for code in (200, 201, 204, 301, 304, 400, 401, 403, 404, 409,
                                   422, 429, 500, 502, 503, 504, 202, 206, 410, 418)]  # fmt: skip
AGGREGATIONS = ["p95", "p99", "avg", "count", "rate_per_second", "max"]


def rules() -> list[object]:
    made = []
    for n in range(200):
        data: dict[str, object] = {
            "id": f"rule-{n}",
            "name": f"Rule {n}",
            "metric_name": METRIC,
            "operator": ">",
            "threshold": 1e12,  # never fires: the cost measured is the evaluation itself
            "evaluation_window": 300,
        }
        if n % 5 == 4:
            data["aggregation"] = "ratio"
            data["filters"] = {"status_code": "=~5.."}
            data["denominator"] = {}  # all requests of the same metric
            data["threshold"] = 2.0
        else:
            data["aggregation"] = AGGREGATIONS[n % len(AGGREGATIONS)]
        if n % 2:
            data["group_by"] = ["route"]
        made.append(validate_rule(data, max_window=900))
    return made


def keys() -> list[SeriesKey]:
    return [
        SeriesKey(METRIC, (("route", route), ("status_code", status), ("success", "true")))
        for route in ROUTES
        for status in STATUSES
    ]


async def bench(ticks: int) -> None:
    rng = random.Random(1)
    clock = FakeClock(datetime(2026, 12, 5, tzinfo=UTC))
    aggregator = Aggregator(SeriesRegistry(), 10, 900)
    series = keys()
    start = clock.time() - 900
    for at in range(0, 900, 10):  # 15 minutes of history, one value per series and bucket
        for key in series:
            aggregator.observe(key, rng.lognormvariate(3, 1), start + at)
    engine = AlertEngine(
        rules(), aggregator, clock, InMemoryAlertStore(), lambda event, rule, fired: []
    )
    durations: list[tuple[float, bool]] = []
    full_collections: list[float] = []  # ticks during which a generation-2 GC ran
    collected = [0]
    gc.callbacks.append(lambda phase, info: _count_full(phase, info, collected))
    for _ in range(ticks):
        for key in rng.sample(series, 20):
            aggregator.observe(key, rng.lognormvariate(3, 1), clock.time())
        closing = int(clock.time() * 4) % 40 == 0  # the first tick of a new 10 s bucket
        before = collected[0]
        started = time.perf_counter()
        await engine.evaluate(clock.time())
        duration = time.perf_counter() - started
        if collected[0] != before and durations:
            full_collections.append(duration)
        else:
            durations.append((duration, closing))
        clock.advance(0.25)
    first = durations[0][0]
    steady = [d for d, closing in durations[1:] if not closing]
    boundary = [d for d, closing in durations[1:] if closing]
    ms = 1000.0
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{now}; Python {platform.python_version()}; 200 rules over {len(series)} series, "
          f"{ticks} ticks of 250 ms")  # fmt: skip
    print(f"first tick:          {first * ms:7.1f} ms")
    print(
        f"steady ticks:        median {statistics.median(steady) * ms:6.1f} ms, "
        f"p95 {statistics.quantiles(steady, n=20)[-1] * ms:6.1f} ms, max {max(steady) * ms:6.1f} ms"
    )
    if boundary:
        print(
            f"bucket-closing ticks: median {statistics.median(boundary) * ms:6.1f} ms, "
            f"max {max(boundary) * ms:6.1f} ms"
        )
    if full_collections:
        print(
            f"ticks with a full GC: {len(full_collections)}, max "
            f"{max(full_collections) * ms:6.1f} ms (the collector walking the whole heap)"
        )
    cpu = statistics.fmean(d for d, _ in durations[1:]) / 0.25
    print(f"CPU share of one core over the run (GC ticks aside): {cpu:.0%}")


def _count_full(phase: str, info: dict[str, int], collected: list[int]) -> None:
    if phase == "start" and info["generation"] == 2:
        collected[0] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=400)
    asyncio.run(bench(parser.parse_args().ticks))


if __name__ == "__main__":
    main()
