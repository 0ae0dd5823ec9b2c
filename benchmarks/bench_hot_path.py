"""Hot path: ``track_metric`` with three dimensions vs prometheus_client and OpenTelemetry.

Measures, in one run and on the same machine, the per-call cost of:

- ours: ``TelemetryClient.track_metric(name, value, {a, b, c})`` (the request-path part;
  folding into sketches happens later, off the path, and is measured separately);
- prometheus_client: ``Histogram.labels(a, b, c).observe(value)``;
- OpenTelemetry SDK: ``histogram.record(value, attributes={a, b, c})`` with a
  MeterProvider and an in-memory reader (no export during the timing).

Prints ns per call (best of several repeats) and the ratios. Targets (issue 3):
ours <= 1.0x prometheus_client and <= 0.2x OpenTelemetry.

Run: ``.venv/bin/python benchmarks/bench_hot_path.py`` (needs the ``bench`` extra).
"""

from __future__ import annotations

import platform
import timeit
from collections.abc import Callable

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, Histogram

from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import load_settings

CALLS = 200_000
REPEATS = 7
DIMS = {"route": "GET /api/personality/{profile_id}", "status_code": "200", "success": "true"}


def ns_per_call(function: Callable[[], None], drain: Callable[[], None] | None = None) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        elapsed = timeit.timeit(function, number=CALLS)
        best = min(best, elapsed)
        if drain is not None:
            drain()
    return best / CALLS * 1e9


def main() -> None:
    monitoring = Monitoring(load_settings(), clock=FakeClock())
    client = monitoring.client

    def ours() -> None:
        client.track_metric("http.server.duration", 12.5, DIMS)

    def fold() -> None:
        monitoring.aggregator.fold_pending(monitoring.clock.time())

    registry = CollectorRegistry()
    histogram = Histogram(
        "http_server_duration", "d", ["route", "status_code", "success"], registry=registry
    )
    values = tuple(DIMS.values())

    def prometheus() -> None:
        histogram.labels(*values).observe(12.5)

    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("bench")
    otel_histogram = meter.create_histogram("http.server.duration")

    def opentelemetry() -> None:
        otel_histogram.record(12.5, attributes=DIMS)

    ours()  # resolve the series once, as the first request would
    results = {
        "ours (track_metric)": ns_per_call(ours, drain=fold),
        "prometheus_client (labels().observe())": ns_per_call(prometheus),
        "OpenTelemetry SDK (histogram.record())": ns_per_call(opentelemetry),
    }
    timeit.timeit(ours, number=CALLS)  # queue CALLS values, then time folding them
    start = timeit.default_timer()
    fold()
    fold_ns = (timeit.default_timer() - start) / CALLS * 1e9

    machine = f"python {platform.python_version()} on {platform.machine()}"
    print(f"{machine}, {CALLS} calls, best of {REPEATS}")
    for name, ns in results.items():
        print(f"{name:42s} {ns:8.0f} ns/call")
    ours_ns = results["ours (track_metric)"]
    prom = results["prometheus_client (labels().observe())"]
    otel = results["OpenTelemetry SDK (histogram.record())"]
    print(f"ours / prometheus_client = {ours_ns / prom:.2f}x (target <= 1.0x)")
    print(f"ours / OpenTelemetry     = {ours_ns / otel:.2f}x (target <= 0.2x)")
    print(f"off-path fold into the DDSketch buckets: {fold_ns:.0f} ns/value")


if __name__ == "__main__":
    main()
