"""``requests_per_minute`` of the performance section over long windows: read from the hour
roll-ups' busiest minutes, it is what the per-minute series of the requests gives."""

from __future__ import annotations

import random

from digitalme.monitoring.alerts.rules import Aggregation
from digitalme.monitoring.dashboard.performance import PerformanceReader
from digitalme.monitoring.dashboard.series import SeriesReader
from digitalme.monitoring.dashboard.timewindow import TimeWindow
from digitalme.monitoring.storage import TelemetryStore, compact
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.client import REQUEST_DURATION
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket
from digitalme.settings import RetentionSettings

T0 = 1_767_225_600.0  # a multiple of 3600
MINUTE, HOUR = 60.0, 3600.0
KEYS = [
    SeriesKey(REQUEST_DURATION, (("route", route), ("status_code", status)))
    for route in ("GET /a", "POST /b", "GET /c")
    for status in ("200", "404", "500")
]


async def _fill(store: TelemetryStore, hours: int) -> None:
    rng = random.Random(17)
    for instance in ("web-1", "web-2"):
        buckets: list[tuple[SeriesKey, Bucket]] = []
        for index in range(hours * 360):
            burst = 25 if rng.random() < 0.02 else 1
            for key in KEYS:
                if rng.random() < 0.4:
                    continue
                bucket = Bucket(T0 + 10 * index, 10)
                bucket.add_many([rng.uniform(5, 900) for _ in range(rng.randint(1, 4) * burst)])
                buckets.append((key, bucket))
        await store.write(TelemetryBatch(instance=instance, buckets=buckets))


async def test_peak_and_current_equal_the_per_minute_series(store: TelemetryStore) -> None:
    await _fill(store, 8)
    await compact(store, T0 + 8 * HOUR + 1800, RetentionSettings())
    reader = SeriesReader(Aggregator(SeriesRegistry()), store.query)
    performance = PerformanceReader(reader, None, apdex_threshold_ms=300.0, slow_query_ms=100.0)

    for start, end in [
        (T0 + 754.5, T0 + 7 * HOUR + 2113.25),  # unaligned: minutes, hours, minutes
        (T0, T0 + 8 * HOUR),
        (T0 + 2 * HOUR + 30, T0 + 4 * HOUR),  # its last minute in a whole hour
        (T0 + 5 * HOUR + 10, T0 + 5 * HOUR + 200),
    ]:
        body = await performance.read(TimeWindow(start, end))

        first = (start // MINUTE + (start % MINUTE > 0)) * MINUTE
        last = end // MINUTE * MINUTE
        series = await reader.series(
            REQUEST_DURATION, Aggregation.COUNT, MINUTE, TimeWindow(first, last), {}
        )
        counts = [value or 0.0 for _, value in series.points]
        figures = body["requests_per_minute"]
        assert (figures["peak"], figures["current"]) == (max(counts), counts[-1])
    assert max(counts) > 0
