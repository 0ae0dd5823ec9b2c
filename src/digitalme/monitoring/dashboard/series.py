"""Time series of any recorded metric, for charts: ``GET /api/metrics/series``.

One value per step of ``[start, end)``: the steps start at ``start`` rounded down
to a multiple of the step (epoch-aligned, so that a chart's points fall on round
times and a stored bucket is never split), and the last one ends at ``end``
(shorter, when ``end`` is not on a step boundary; rates divide by its length).
A bucket belongs to the step its start falls in.

Aggregations are the alert rules' (:class:`~digitalme.monitoring.alerts.rules.
Aggregation`) except ``ratio``: ``avg``, ``sum``, ``count``, ``min``, ``max``,
``p50`` / ``p90`` / ``p95`` / ``p99`` (within the sketch's 1% relative error),
``rate_per_second`` and ``rate_per_minute`` (recorded values per second or
minute). An empty step is 0 for ``count``, ``sum`` and the rates, null for the
others.

Where values come from: the telemetry store when there is one (it holds
everything the pipeline has flushed, at most a flush interval behind the live
view); otherwise the live aggregates (the last ``telemetry.live_window_seconds``).
The two are not mixed: a live bucket still filling is also in the store, and
adding both would count it twice.

A metric name no series has ever had answers an empty ``points`` list (200, not
404: a chart of a metric that has not been recorded yet is not an error, and
the empty list tells it apart from a known metric with no data in the range,
which answers every step).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from digitalme.monitoring.alerts.rules import Aggregation
from digitalme.monitoring.dashboard.errors import InvalidParameter
from digitalme.monitoring.dashboard.timewindow import TimeWindow
from digitalme.monitoring.durations import format_duration, parse_duration
from digitalme.monitoring.storage.queries import Aggregation as StoredAggregation
from digitalme.monitoring.storage.queries import TelemetryQueries, bucket_value, dims_match
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.sketch import Bucket

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_POINTS",
    "Series",
    "SeriesReader",
    "choose_step",
    "parse_aggregation",
    "parse_dims",
    "parse_step",
]

AGGREGATIONS: tuple[Aggregation, ...] = tuple(a for a in Aggregation if a is not Aggregation.RATIO)
DEFAULT_POINTS = 300
"""At most this many points when the caller gives no step."""
NICE_STEPS: tuple[float, ...] = (
    10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800,
)  # fmt: skip
MAX_DIMS = 20
MAX_DIM_TEXT = 500
_DIM_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")

Point = tuple[float, float | None]


def parse_aggregation(text: str | None) -> Aggregation:
    """The ``agg`` parameter (``avg`` when not given)."""
    if text is None:
        return Aggregation.AVG
    for aggregation in AGGREGATIONS:
        if aggregation.value == text.strip().lower():
            return aggregation
    names = ", ".join(a.value for a in AGGREGATIONS)
    raise InvalidParameter("agg", f"{text!r} is not one of {names}")


def parse_dims(text: str | None) -> dict[str, str]:
    """``route=GET /api/personality,status_code=200`` as filters.

    Pairs are separated by commas, key and value by the first ``=``; spaces around
    both are dropped (not inside: ``GET /x`` stays whole). A key appears once. A
    value is matched exactly, or, ending in ``*``, as a prefix: ``status_code=5*``
    selects every 5xx answer.
    """
    if text is None or not text.strip():
        return {}
    if len(text) > MAX_DIM_TEXT:
        raise InvalidParameter("dims", f"longer than {MAX_DIM_TEXT} characters")
    dims: dict[str, str] = {}
    pairs = text.split(",")
    if len(pairs) > MAX_DIMS:
        raise InvalidParameter("dims", f"more than {MAX_DIMS} filters")
    for pair in pairs:
        key, equals, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not equals:
            raise InvalidParameter("dims", f"{pair.strip()!r} is not key=value")
        if not _DIM_KEY.fullmatch(key):
            raise InvalidParameter("dims", f"{key!r} is not a dimension name")
        if key in dims:
            raise InvalidParameter("dims", f"{key!r} is given more than once")
        dims[key] = value
    return dims


def choose_step(seconds: float, resolution: float, points: int = DEFAULT_POINTS) -> float:
    """The smallest round step, at least ``resolution``, giving at most ``points`` points
    over ``seconds`` (plus one when the start is rounded down to the step)."""
    for step in NICE_STEPS:
        if step >= resolution and math.ceil(seconds / step) <= points:
            return float(step)
    return float(max(resolution, math.ceil(seconds / points)))


def parse_step(
    text: str | None, window: TimeWindow, *, resolution: float, max_points: int
) -> float:
    """The ``step`` parameter in seconds, or a chosen one (:func:`choose_step`) when None.

    Refused: not a duration, finer than the data's ``resolution`` (steps would
    fall between buckets and read as gaps), or giving more than ``max_points``.
    """
    if text is None:
        # One point short of the cap: rounding the start down may add one.
        return choose_step(window.seconds, resolution, min(DEFAULT_POINTS, max_points - 1))
    try:
        step = parse_duration(text)
    except ValueError as exc:
        raise InvalidParameter("step", str(exc)) from None
    if step < resolution:
        raise InvalidParameter(
            "step",
            f"{text.strip()} is finer than the metrics' resolution ({format_duration(resolution)})",
        )
    points = math.ceil((window.end - aligned(window.start, step)) / step)
    if points > max_points:
        raise InvalidParameter(
            "step", f"{text.strip()} gives {points} points, more than the maximum ({max_points})"
        )
    return step


def aligned(moment: float, step: float) -> float:
    """``moment`` rounded down to a multiple of ``step`` (epoch seconds)."""
    return moment - moment % step


@dataclass(frozen=True, slots=True)
class Series:
    """One chart's data: ``points`` are ``(step start, value)``; empty for an unknown name."""

    name: str
    aggregation: Aggregation
    step: float
    window: TimeWindow
    dims: Mapping[str, str]
    source: str  # "store" or "live"
    points: list[Point]
    instance: str | None = None  # one instance's values only (None: every instance's)

    def to_dict(self) -> dict[str, Any]:
        """The route's JSON body."""
        return {
            "name": self.name,
            "agg": self.aggregation.value,
            "step": self.step,
            "start": self.window.start_at.isoformat(),
            "end": self.window.end_at.isoformat(),
            "dims": dict(self.dims),
            "instance": self.instance,
            "source": self.source,
            "points": [
                {"t": datetime.fromtimestamp(t, UTC).isoformat(), "value": value}
                for t, value in self.points
            ],
        }


class SeriesReader:
    """Computes series from the store when there is one, else from the live aggregates."""

    def __init__(self, aggregator: Aggregator, queries: TelemetryQueries | None) -> None:
        self.aggregator = aggregator
        self.queries = queries

    @property
    def resolution(self) -> int:
        """The finest bucket length (seconds) recorded values are folded into."""
        return self.aggregator.resolution

    async def series(
        self,
        name: str,
        aggregation: Aggregation,
        step: float,
        window: TimeWindow,
        dims: Mapping[str, str],
        instance: str | None = None,
    ) -> Series:
        """``name``'s values per ``step`` over ``window`` (its start aligned to the step),
        of every instance (merged) or of ``instance`` only."""
        if aggregation is Aggregation.RATIO:
            raise InvalidParameter("agg", "ratio is not a series aggregation")
        steps = TimeWindow(aligned(window.start, step), window.end)
        count = math.ceil(steps.seconds / step)
        if self.queries is not None:
            points = await self._stored(name, aggregation, step, steps, dims, count, instance)
            source = "store"
        elif instance is not None:
            raise InvalidParameter("instance", "needs the telemetry store (it keeps each one's)")
        else:
            points = self._live(name, aggregation, step, steps, dims, count)
            source = "live"
        return Series(name, aggregation, step, steps, dict(dims), source, points, instance)

    async def _stored(
        self,
        name: str,
        aggregation: Aggregation,
        step: float,
        window: TimeWindow,
        dims: Mapping[str, str],
        count: int,
        instance: str | None,
    ) -> list[Point]:
        assert self.queries is not None
        if not await self.queries.series(name):
            return []
        stored, factor = _store_aggregation(aggregation)
        points = await self.queries.metric_points(
            name,
            stored,
            step,
            window.start,
            window.end,
            where=dims,
            max_points=count,
            instance=instance,
        )
        return _scaled(points, factor)

    def _live(
        self,
        name: str,
        aggregation: Aggregation,
        step: float,
        window: TimeWindow,
        dims: Mapping[str, str],
        count: int,
    ) -> list[Point]:
        if not any(series.key.name == name for series in self.aggregator.registry.all()):
            return []
        length = max(1, math.ceil(step))
        steps = [Bucket(window.start + i * step, length) for i in range(count)]
        for key, buckets in self.aggregator.live_buckets().items():
            if key.name != name:
                continue
            if dims and not dims_match(key.dims(), dims):
                continue
            for start, bucket in buckets.items():
                if window.start <= start < window.end:
                    steps[min(int((start - window.start) // step), count - 1)].merge(bucket)
        stored, factor = _store_aggregation(aggregation)
        return _scaled(
            [(b.start, bucket_value(stored, b, min(step, window.end - b.start))) for b in steps],
            factor,
        )


def _store_aggregation(aggregation: Aggregation) -> tuple[StoredAggregation, float]:
    """The store's aggregation for ``aggregation`` and the factor its values take."""
    if aggregation is Aggregation.RATE_PER_SECOND:
        return StoredAggregation.RATE, 1.0
    if aggregation is Aggregation.RATE_PER_MINUTE:
        return StoredAggregation.RATE, 60.0
    return StoredAggregation(aggregation.value), 1.0


def _scaled(points: list[Point], factor: float) -> list[Point]:
    if factor == 1.0:
        return points
    return [(t, None if value is None else value * factor) for t, value in points]
