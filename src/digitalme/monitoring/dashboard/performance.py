"""The service's performance over a time window: ``GET /api/metrics/performance``.

The plan's ``GetPerformanceMetricsAsync`` returned made-up numbers; here every
figure comes from recorded series, which the telemetry client records for every
request and dependency *before* sampling, so counts are exact (no weights to
apply) and percentiles are within the sketch's 1% relative error::

    {"window": {"start": ISO, "end": ISO}, "source": "store" | "live",
     "requests_per_minute": {"current", "average", "peak"},
     "response_times": {"average", "p50", "p95", "p99"},          # ms
     "requests", "errors", "error_rate",
     "apdex": {"threshold_ms", "score", "satisfied", "tolerating", "frustrated"},
     "personality_generation": {"average_ms", "success_rate", "per_hour", "count"},
     "database_queries": {"count", "average_ms", "slow", "pool"}}

Where the values come from (:class:`~.series.SeriesReader`'s rule): the
telemetry store when there is one, else the live aggregates, which hold only the
last ``telemetry.live_window_seconds``. A bucket belongs to the window when its
start does (10 s buckets up to 6 h, 1 min ones beyond), as for the series.

- **Requests** are the ``http.server.duration`` series (one value per request);
  ``errors`` are those answered 5xx, ``error_rate`` their share (0..1).
- **Requests per minute**: ``average`` is the requests over the window's length
  in minutes; ``current`` the count of the last whole clock minute in the
  window and ``peak`` the busiest whole minute (both null when the window holds
  no whole minute: a minute cut by the window's edges would read low). From the
  store, whole hours give their busiest minute from the hour roll-ups
  (:meth:`~digitalme.monitoring.storage.queries.TelemetryQueries.busiest_minute`):
  a day reads about 24 rows and the minutes of its edges, not 1,440 minutes.
- **Apdex** (threshold ``dashboard.apdex_threshold_ms``, T): satisfied when the
  duration is at most T, tolerating at most 4T, frustrated above that or
  answered 5xx. Durations are classed by the bins of the merged sketch: a bin
  is satisfied when its key is at most T's, so every duration up to T is
  satisfied and one above T by less than a bin's width (about 2%, the two sides
  of the sketch's 1% relative accuracy) may be too; likewise at 4T.
- **Personality generation** is the host's ``Personality.Generation.Duration``
  metric (ms, dimension ``Success``), recorded by
  :meth:`~digitalme.monitoring.telemetry.performance.PerformanceMonitor.
  record_personality_generation`.
- **Database queries** are the ``SQL`` dependencies (``dependency.duration``,
  what :func:`~digitalme.monitoring.telemetry.instrumentation.sql.
  instrument_engine` records for the host's engine). ``slow`` counts those over
  ``dashboard.slow_query_ms`` from the sketch bins, not from stored dependency
  items: the bins count every query, sampled out or not, and exist without a
  store; the price is the same bin-width tolerance as Apdex (a query above the
  threshold by less than about 2% may not count). ``pool`` is what the host
  registered as ``database.pool`` in :class:`~.figures.HostFigures` (null when
  nothing is registered or its source failed).

Nothing is invented for an empty window: counts and per-minute or per-hour rates
are 0 (nothing was recorded), while averages, percentiles, rates of success or
error and the Apdex score, which have no meaning without values, are null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ddsketch.mapping import LogarithmicMapping

from digitalme.monitoring.alerts.rules import Aggregation
from digitalme.monitoring.dashboard.figures import HostFigures
from digitalme.monitoring.dashboard.series import SeriesReader
from digitalme.monitoring.dashboard.timewindow import TimeWindow
from digitalme.monitoring.telemetry.client import DEPENDENCY_DURATION, REQUEST_DURATION
from digitalme.monitoring.telemetry.instrumentation.sql import DEPENDENCY_TYPE as SQL
from digitalme.monitoring.telemetry.performance import PERSONALITY_GENERATION_DURATION
from digitalme.monitoring.telemetry.sketch import RELATIVE_ACCURACY, Bucket

__all__ = ["POOL_FIGURES", "PerformanceReader", "count_at_most"]

POOL_FIGURES = "database.pool"
"""The :class:`HostFigures` name of the host database's connection pool."""
MINUTE = 60.0
HOUR = 3600.0

# The mapping every recorded sketch uses (the one DDSketch(RELATIVE_ACCURACY) builds):
# thresholds are keyed by it, so a value equal to a threshold falls in the threshold's bin.
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)

Groups = list[tuple[dict[str, str], Bucket]]


def count_at_most(bucket: Bucket, threshold: float) -> int:
    """How many of ``bucket``'s values are at most ``threshold``, by sketch bin.

    Every value up to ``threshold`` counts, and so may one above it by less than
    a bin's width (about 2%): the bin holding ``threshold`` counts whole.
    """
    if bucket.count == 0 or bucket.min > threshold:
        return 0
    if bucket.max <= threshold:  # the bucket's exact extremes settle it
        return bucket.count
    sketch: Any = bucket.sketch  # ddsketch's stores are untyped internals
    total: float = sketch._zero_count + sketch._negative_store.count
    if threshold <= _MAPPING.min_possible:  # the sketch holds such values as zeros
        return min(bucket.count, round(total))
    key = _MAPPING.key(threshold)
    store = sketch._store
    for index, count in enumerate(store.bins):
        if store.offset + index > key:
            break
        total += count
    return min(bucket.count, round(total))


def _merged(groups: Groups, start: float, length: int) -> Bucket:
    total = Bucket(start, length)
    for _, bucket in groups:
        total.merge(bucket)
    return total


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _is_server_error(status_code: str) -> bool:
    try:
        return int(status_code) >= 500
    except ValueError:
        return False


class PerformanceReader:
    """Computes the performance summary of a window from recorded telemetry."""

    def __init__(
        self,
        reader: SeriesReader,
        figures: HostFigures | None,
        *,
        apdex_threshold_ms: float,
        slow_query_ms: float,
    ) -> None:
        self.reader = reader
        self.figures = figures
        self.apdex_threshold_ms = apdex_threshold_ms
        self.slow_query_ms = slow_query_ms

    @property
    def source(self) -> str:
        return "store" if self.reader.queries is not None else "live"

    async def read(self, window: TimeWindow) -> dict[str, Any]:
        """The route's JSON body for ``window``."""
        length = max(1, math.ceil(window.seconds))
        by_status = await self._groups(REQUEST_DURATION, window, group_by=("status_code",))
        requests = _merged(by_status, window.start, length)
        failed = [(dims, b) for dims, b in by_status if _is_server_error(dims["status_code"])]
        answered = [(dims, b) for dims, b in by_status if not _is_server_error(dims["status_code"])]
        errors = sum(bucket.count for _, bucket in failed)
        return {
            "window": {"start": window.start_at.isoformat(), "end": window.end_at.isoformat()},
            "source": self.source,
            "requests_per_minute": await self._per_minute(window, requests.count),
            "response_times": {
                "average": requests.mean,
                "p50": requests.quantile(0.50),
                "p95": requests.quantile(0.95),
                "p99": requests.quantile(0.99),
            },
            "requests": requests.count,
            "errors": errors,
            "error_rate": _ratio(errors, requests.count),
            "apdex": self._apdex(_merged(answered, window.start, length), requests.count),
            "personality_generation": await self._personality(window, length),
            "database_queries": await self._database(window, length),
        }

    async def _groups(
        self,
        name: str,
        window: TimeWindow,
        *,
        where: Mapping[str, str] | None = None,
        group_by: Sequence[str] = (),
    ) -> Groups:
        """``name``'s merged buckets over ``window``, one per group (store, else live)."""
        if self.reader.queries is not None:
            return await self.reader.queries.metric_window(
                name, window.start, window.end, where=where, group_by=group_by
            )
        return self.reader.aggregator.window(
            name, window.start, window.end, where=where, group_by=group_by
        )

    async def _per_minute(self, window: TimeWindow, requests: int) -> dict[str, float | None]:
        first = math.ceil(window.start / MINUTE) * MINUTE
        last = math.floor(window.end / MINUTE) * MINUTE  # the end of the last whole minute
        current = peak = None
        if last > first and self.reader.queries is not None:
            # whole hours read their busiest minute from the hour roll-ups
            found = await self.reader.queries.busiest_minute(REQUEST_DURATION, first, last)
            # no series: no request was ever recorded, so every whole minute had none
            peak, current = found or (0.0, 0.0)
        elif last > first:
            series = await self.reader.series(
                REQUEST_DURATION, Aggregation.COUNT, MINUTE, TimeWindow(first, last), {}
            )
            counts = [value or 0.0 for _, value in series.points] or [0.0]
            current, peak = counts[-1], max(counts)
        return {
            "current": current,
            "average": requests / (window.seconds / MINUTE),
            "peak": peak,
        }

    def _apdex(self, answered: Bucket, total: int) -> dict[str, Any]:
        threshold = self.apdex_threshold_ms
        satisfied = count_at_most(answered, threshold)
        tolerating = count_at_most(answered, 4 * threshold) - satisfied
        score = _ratio(satisfied + tolerating / 2, total)
        return {
            "threshold_ms": threshold,
            "score": score,
            "satisfied": satisfied,
            "tolerating": tolerating,
            "frustrated": total - satisfied - tolerating,
        }

    async def _personality(self, window: TimeWindow, length: int) -> dict[str, Any]:
        groups = await self._groups(PERSONALITY_GENERATION_DURATION, window, group_by=("Success",))
        generations = _merged(groups, window.start, length)
        succeeded = sum(bucket.count for dims, bucket in groups if dims["Success"] == "true")
        return {
            "average_ms": generations.mean,
            "success_rate": _ratio(succeeded, generations.count),
            "per_hour": generations.count / (window.seconds / HOUR),
            "count": generations.count,
        }

    async def _database(self, window: TimeWindow, length: int) -> dict[str, Any]:
        groups = await self._groups(DEPENDENCY_DURATION, window, where={"type": SQL})
        queries = _merged(groups, window.start, length)
        pool = None if self.figures is None else await self.figures.read(POOL_FIGURES)
        return {
            "count": queries.count,
            "average_ms": queries.mean,
            "slow": queries.count - count_at_most(queries, self.slow_query_ms),
            "pool": pool,
        }
