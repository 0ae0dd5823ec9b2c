"""Live aggregates: per series, time buckets folded off the request path.

The pipeline folds each series' pending values into the bucket that holds the
fold time on each of its ticks, and the alert engine does before each
evaluation, so a rule sees a value on its first tick after the value was
recorded (request and dependency durations count when the call ends, as a
Prometheus histogram observes them). :meth:`Aggregator.observe` folds a value
at a given time (the pipeline's own counters, rule tests). Buckets older than
the live window are dropped from memory; the store keeps them.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.telemetry.sinks import SeriesKey
from digitalme.monitoring.telemetry.sketch import Bucket

# Upper bounds of the cumulative histograms exported to Prometheus (values are
# usually milliseconds): Prometheus' default buckets, in ms, plus a few more.
HISTOGRAM_BOUNDS: tuple[float, ...] = (
    1,
    2.5,
    5,
    10,
    25,
    50,
    75,
    100,
    250,
    500,
    750,
    1000,
    2500,
    5000,
    7500,
    10000,
    30000,
    60000,
)


@dataclass(slots=True)
class Totals:
    """Cumulative figures of one series since start (for Prometheus counters and histograms)."""

    count: int = 0
    sum: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(HISTOGRAM_BOUNDS) + 1))

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.buckets[bisect_left(HISTOGRAM_BOUNDS, value)] += 1

    def add_many(self, values: list[float]) -> None:
        self.count += len(values)
        self.sum += math.fsum(values)
        buckets = self.buckets
        for index, count in Counter(map(_bound_index, values)).items():
            buckets[index] += count


_bound_index = partial(bisect_left, HISTOGRAM_BOUNDS)


class Aggregator:
    """In-memory buckets of every series, readable by the alert engine and the live view."""

    def __init__(
        self, registry: SeriesRegistry, bucket_seconds: int = 10, live_window_seconds: int = 900
    ) -> None:
        self.registry = registry
        self.resolution = bucket_seconds
        self.live_window = live_window_seconds
        self._buckets: dict[SeriesKey, dict[float, Bucket]] = {}
        self._dirty: dict[tuple[SeriesKey, float], Bucket] = {}
        self.totals: dict[SeriesKey, Totals] = {}
        self.series_generation = 0
        """Changes whenever a series gains its first live bucket or loses its last."""

    def bucket_start(self, at: float) -> float:
        return at - at % self.resolution

    def fold_pending(self, now: float) -> int:
        """Move every series' recorded values into the bucket holding ``now``; returns the count."""
        folded = 0
        start = self.bucket_start(now)
        for series in self.registry.all():
            pending = series.pending
            if not pending:
                continue
            # popleft, not a copy and clear: other threads may be appending meanwhile
            popleft = pending.popleft
            values = [popleft() for _ in range(len(pending))]
            self._bucket(series.key, start).add_many(values)
            self._totals(series.key).add_many(values)
            folded += len(values)
        return folded

    def observe(self, key: SeriesKey, value: float, at: float) -> None:
        """Fold one value at its own time (for values derived from items)."""
        self._bucket(key, self.bucket_start(at)).add(value)
        self._totals(key).add(value)

    def _totals(self, key: SeriesKey) -> Totals:
        totals = self.totals.get(key)
        if totals is None:
            totals = self.totals[key] = Totals()
        return totals

    def _bucket(self, key: SeriesKey, start: float) -> Bucket:
        by_start = self._buckets.get(key)
        if by_start is None:
            by_start = self._buckets[key] = {}
            self.series_generation += 1
        bucket = by_start.get(start)
        if bucket is None:
            bucket = by_start[start] = Bucket(start, self.resolution)
        self._dirty[(key, start)] = bucket
        return bucket

    def take_dirty(self) -> list[tuple[SeriesKey, Bucket]]:
        """Buckets changed since the last call (whole, for the sinks to upsert)."""
        dirty = [(key, bucket) for (key, _), bucket in self._dirty.items()]
        self._dirty.clear()
        return dirty

    def mark_dirty(self, buckets: Iterable[tuple[SeriesKey, Bucket]]) -> None:
        """Put buckets back to be sent again (after a failed write)."""
        for key, bucket in buckets:
            self._dirty.setdefault((key, bucket.start), bucket)

    def prune(self, now: float) -> None:
        """Forget buckets that ended before the live window."""
        horizon = self.bucket_start(now) - self.live_window
        for key in list(self._buckets):
            by_start = self._buckets[key]
            for start in [s for s in by_start if s < horizon]:
                del by_start[start]
            if not by_start:
                del self._buckets[key]
                self.series_generation += 1

    def window(
        self,
        name: str,
        start: float,
        end: float,
        *,
        where: Mapping[str, str] | None = None,
        group_by: Sequence[str] = (),
    ) -> list[tuple[dict[str, str], Bucket]]:
        """Merge the live buckets of ``name`` that start in ``[start, end)``, one per group.

        ``where`` keeps series whose dimensions equal the given values; groups
        are keyed by the values of ``group_by`` dimensions (missing -> "").
        """
        groups: dict[tuple[str, ...], Bucket] = {}
        for key, by_start in self._buckets.items():
            if key.name != name:
                continue
            dims = key.dims()
            if where and any(dims.get(k) != v for k, v in where.items()):
                continue
            group = tuple(dims.get(g, "") for g in group_by)
            for bucket_start, bucket in by_start.items():
                if start <= bucket_start < end:
                    merged = groups.get(group)
                    if merged is None:
                        merged = groups[group] = Bucket(start, int(end - start))
                    merged.merge(bucket)
        return [(dict(zip(group_by, group, strict=True)), b) for group, b in groups.items()]

    def series_names(self) -> list[str]:
        return sorted({key.name for key in self._buckets})

    def live_buckets(self) -> Mapping[SeriesKey, Mapping[float, Bucket]]:
        """Every series' live buckets by start, for the alert engine (read-only)."""
        return self._buckets
