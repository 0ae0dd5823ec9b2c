"""Metric series and the request path's side of metrics: resolve once, then append.

``track_metric(name, value, dims)`` must cost about what prometheus_client's
``labels(...).observe()`` costs. The hot path therefore does one dict lookup on
the raw ``(name, tuple(dims.items()))`` and one ``deque.append``; everything
else (validation of names, canonical dimension order, the cardinality cap) runs
once per distinct raw key, on the slow path, and its answer is cached.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Mapping
from enum import StrEnum

from digitalme.monitoring.telemetry.sinks import SeriesKey

MAX_NAME_LENGTH = 200
MAX_DIMENSIONS = 10
MAX_DIMENSION_LENGTH = 100
OTHER = "other"
# Raw keys are cached only up to this many, so a caller that puts unbounded
# values (user ids, raw paths) in dimensions costs time, never memory.
MAX_RAW_KEYS = 100_000

RawKey = tuple[str, tuple[tuple[str, object], ...] | None]


class RejectReason(StrEnum):
    EMPTY_NAME = "empty_name"
    NAME_TOO_LONG = "name_too_long"
    NOT_A_NUMBER = "not_a_number"
    NOT_FINITE = "not_finite"


class MetricSeries:
    """One series: its key and the values recorded since the last fold."""

    __slots__ = ("key", "pending")

    def __init__(self, key: SeriesKey) -> None:
        self.key = key
        self.pending: deque[float] = deque()


class SeriesRegistry:
    """Canonical series by key, with a per-metric cardinality cap.

    Past ``max_series_per_metric`` distinct dimension sets, a metric's new
    combinations fold into one overflow series whose dimension values are all
    ``other``, so the count of series stays bounded whatever callers send.
    """

    def __init__(self, max_series_per_metric: int = 1000) -> None:
        self._max_per_metric = max_series_per_metric
        self.raw: dict[RawKey, MetricSeries] = {}
        self._series: dict[SeriesKey, MetricSeries] = {}
        self._per_metric: dict[str, int] = {}
        self.overflowed: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._series)

    def all(self) -> list[MetricSeries]:
        return list(self._series.values())

    def resolve(
        self, name: str, dimensions: Mapping[str, object] | None
    ) -> MetricSeries | RejectReason:
        """The series for a raw name and dimensions (the slow path, cached by raw key)."""
        if not isinstance(name, str) or not name.strip():
            return RejectReason.EMPTY_NAME
        if len(name) > MAX_NAME_LENGTH:
            return RejectReason.NAME_TOO_LONG
        key = self._canonical(name, dimensions)
        series = self._series.get(key)
        if series is None:
            count = self._per_metric.get(name, 0)
            if count >= self._max_per_metric and key.dimensions:
                self.overflowed[name] = self.overflowed.get(name, 0) + 1
                key = SeriesKey(name, tuple((k, OTHER) for k, _ in key.dimensions))
                series = self._series.get(key)
            if series is None:
                series = self._series[key] = MetricSeries(key)
                self._per_metric[name] = count + 1
        if len(self.raw) < MAX_RAW_KEYS:
            # Unhashable dimension values cannot be cached: this slow path serves them.
            with contextlib.suppress(TypeError):
                self.raw[raw_key(name, dimensions)] = series
        return series

    def series(self, key: SeriesKey) -> MetricSeries:
        """The series for an already-canonical key (used off the request path)."""
        found = self._series.get(key)
        if found is None:
            resolved = self.resolve(key.name, dict(key.dimensions))
            assert isinstance(resolved, MetricSeries)
            found = resolved
        return found

    @staticmethod
    def _canonical(name: str, dimensions: Mapping[str, object] | None) -> SeriesKey:
        if not dimensions:
            return SeriesKey(name)
        pairs = sorted(
            (str(k)[:MAX_DIMENSION_LENGTH], _text(v)[:MAX_DIMENSION_LENGTH])
            for k, v in dimensions.items()
        )
        return SeriesKey(name, tuple(pairs[:MAX_DIMENSIONS]))


def raw_key(name: str, dimensions: Mapping[str, object] | None) -> RawKey:
    return (name, tuple(dimensions.items()) if dimensions else None)


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
