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
     "active_alerts", "connections", "instances"}

**Several instances.** With ``remote`` (the other instances' request buckets,
read from the store by :meth:`LiveSnapshot.refresh` before each snapshot while
clients are connected), the figures are the whole service's: the others'
requests of the last interval are what their buckets gained since the previous
snapshot, their last minute is their buckets starting in it, and their buckets
merge into the p95; ``instances`` counts the instances with requests in the
minute (this one included). They reach the store within about half a second,
so their share lags by that much. ``requests_total`` stays this instance's
since it started.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.cluster.remote import RemoteBuckets
from digitalme.monitoring.dashboard.hub_messages import Message
from digitalme.monitoring.outages import Outages
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
        remote: RemoteBuckets | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.aggregator = aggregator
        self.interval = float(interval)
        self.clock = clock
        self.active_alerts = active_alerts
        self.remote = remote
        self.sequence = 0
        # the remote buckets' counts when last read: what they gained since is new, if that
        # read was the previous snapshot's (else the gain spans a pause: not one interval)
        self._remote_counts: dict[tuple[object, float], int] = {}
        self._remote_polls = 0
        self._remote_read_at: float | None = None
        self._outages = Outages("digitalme.monitoring.hub", failed="snapshot_remote_unavailable")
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

    def _minute_bucket(self, now: float) -> Bucket:
        """This instance's live request buckets starting in the last minute, merged."""
        start = self.aggregator.bucket_start(now - MINUTE)
        merged = Bucket(start, max(1, math.ceil(now + 1 - start)))
        for _, bucket in self.aggregator.window(REQUEST_DURATION, start, now + 1):
            merged.merge(bucket)
        return merged

    async def refresh(self) -> None:
        """Read the other instances' new request buckets (a failure is logged once per
        outage; the snapshot then goes on with what was read before)."""
        if self.remote is None:
            return
        try:
            await self.remote.refresh()
        except Exception as exc:
            self._outages.failed("store", type(exc).__name__)
            return
        self._outages.recovered("store")

    def _remote_figures(self, now: float, merged: Bucket) -> tuple[int, int, int, int]:
        """``(new requests, requests in the minute, errors in it, instances with requests)``
        of the other instances; their buckets of the minute are merged into ``merged``."""
        if self.remote is None:
            return 0, 0, 0, 0
        start = self.aggregator.bucket_start(now - MINUTE)
        fresh = minute = errors = 0
        counts: dict[tuple[object, float], int] = {}
        busy: set[object] = set()
        for identity, dims, by_start in self.remote.series(REQUEST_DURATION):
            server_error = _is_server_error(dims.get("status_code"))
            for bucket_start, bucket in by_start.items():
                counts[identity, bucket_start] = bucket.count
                fresh += max(0, bucket.count - self._remote_counts.get((identity, bucket_start), 0))
                if bucket_start < start or not bucket.count:
                    continue
                minute += bucket.count
                errors += bucket.count if server_error else 0
                merged.merge(bucket)
                busy.add(identity[0] if isinstance(identity, tuple) else identity)
        if self.remote.polls != self._remote_polls:  # read again since the last snapshot
            moment = self.clock.monotonic()
            last, self._remote_read_at = self._remote_read_at, moment
            self._remote_polls = self.remote.polls
            self._remote_counts = counts
            if last is None or moment - last > 2 * self.interval:
                fresh = 0
        return fresh, minute, errors, len(busy)

    def take(self, connections: int = 0) -> Message:
        requests, errors = self._totals()
        last_requests, _ = self._history[-1]
        minute_requests, minute_errors = self._history[0]
        span = len(self._history) * self.interval
        in_minute = requests - minute_requests
        errors_in_minute = errors - minute_errors
        self._history.append((requests, errors))
        now = self.clock.time()
        merged = self._minute_bucket(now)
        fresh, remote_minute, remote_errors, others = self._remote_figures(now, merged)
        in_minute += remote_minute
        errors_in_minute += remote_errors
        self.sequence += 1
        return {
            "type": "MetricsSnapshot",
            "sequence": self.sequence,
            "at": self.clock.now().isoformat(),
            "interval": self.interval,
            "requests_per_second": (requests - last_requests + fresh) / self.interval,
            "requests_per_second_1m": in_minute / span,
            "requests_1m": in_minute,
            "errors_1m": errors_in_minute,
            "error_rate_1m": errors_in_minute / in_minute if in_minute else None,
            "p95_ms_1m": merged.quantile(0.95),
            "requests_total": requests,
            "active_alerts": self.active_alerts(),
            "connections": connections,
            "instances": 1 + others,
        }
