"""The live hub's ``MetricsSnapshot``: a few figures from the live aggregates.

Counts come from the aggregator's cumulative totals of the request series
(``http.server.duration``, one value per request, recorded before sampling, so
exact), read at each snapshot: the difference with the previous snapshot is the
last interval, with the one about a minute ago the last minute. Rates divide by
the nominal interval (snapshots are taken every ``interval`` seconds), so no
clock is needed and a fake one does not freeze them. The p95 is the sketch
quantile of the live buckets starting in the last minute (bucket resolution:
the last minute plus the current bucket). Totals move when the pipeline folds,
every aggregation tick, so a request shows up in the first snapshot after the
tick that follows it::

    {"type": "MetricsSnapshot", "sequence": n, "at": ISO, "interval": s,
     "requests_per_second": rate of the last interval,
     "requests_per_second_1m": rate of the last minute,
     "requests_1m", "errors_1m" (5xx), "error_rate_1m" (0..1, null without requests),
     "p95_ms_1m" (null without requests), "requests_total" (since start),
     "active_alerts", "connections"}
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.dashboard.hub_messages import Message
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.client import REQUEST_DURATION
from digitalme.monitoring.telemetry.sketch import Bucket

__all__ = ["LiveSnapshot"]

MINUTE = 60.0


def _is_server_error(status_code: str | None) -> bool:
    try:
        return status_code is not None and int(status_code) >= 500
    except ValueError:
        return False


class LiveSnapshot:
    """Takes one snapshot per call; meant to be called every ``interval`` seconds."""

    def __init__(
        self,
        aggregator: Aggregator,
        *,
        interval: float,
        clock: Clock,
        active_alerts: Callable[[], int] = lambda: 0,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.aggregator = aggregator
        self.interval = float(interval)
        self.clock = clock
        self.active_alerts = active_alerts
        self.sequence = 0
        steps = max(1, math.ceil(MINUTE / self.interval))
        # (requests, errors) totals of the previous snapshots, the oldest about a minute ago
        self._history: deque[tuple[int, int]] = deque([self._totals()], maxlen=steps)

    def _totals(self) -> tuple[int, int]:
        requests = errors = 0
        for key, totals in list(self.aggregator.totals.items()):
            if key.name != REQUEST_DURATION:
                continue
            requests += totals.count
            if _is_server_error(key.dims().get("status_code")):
                errors += totals.count
        return requests, errors

    def _p95(self, now: float) -> float | None:
        start = self.aggregator.bucket_start(now - MINUTE)
        merged = Bucket(start, max(1, math.ceil(now + 1 - start)))
        for _, bucket in self.aggregator.window(REQUEST_DURATION, start, now + 1):
            merged.merge(bucket)
        return merged.quantile(0.95)

    def take(self, connections: int = 0) -> Message:
        requests, errors = self._totals()
        last_requests, _ = self._history[-1]
        minute_requests, minute_errors = self._history[0]
        span = len(self._history) * self.interval
        in_minute = requests - minute_requests
        errors_in_minute = errors - minute_errors
        self._history.append((requests, errors))
        self.sequence += 1
        return {
            "type": "MetricsSnapshot",
            "sequence": self.sequence,
            "at": self.clock.now().isoformat(),
            "interval": self.interval,
            "requests_per_second": (requests - last_requests) / self.interval,
            "requests_per_second_1m": in_minute / span,
            "requests_1m": in_minute,
            "errors_1m": errors_in_minute,
            "error_rate_1m": errors_in_minute / in_minute if in_minute else None,
            "p95_ms_1m": self._p95(self.clock.time()),
            "requests_total": requests,
            "active_alerts": self.active_alerts(),
            "connections": connections,
        }
