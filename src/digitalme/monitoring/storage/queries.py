"""Reading the telemetry store: metric windows and series, item counts (total, grouped,
distinct values in a window), active-user sketches, recent items.

Metric queries merge stored buckets (counts and sums add, sketches merge, so
percentiles stay within the sketch's 1% relative error). A bucket belongs to a
window ``[start, end)`` when its *start* does: align windows to the resolution
for exact edges; adjacent windows never count a bucket twice.

Resolution: the finest of 10 s (windows up to 6 h), 60 s (up to 7 days), 300 s
(up to 90 days) or 3600 s (beyond), moved to a coarser one when retention has
already removed the finer buckets at the window's start. A coarse query is
*stitched* (:mod:`.buckets`), so the newest minutes are never missing from a long
window. The resolution decides which buckets a window holds (those starting in
it); :meth:`TelemetryQueries.metric_window` without an explicit resolution then
reads the whole minutes, 5 minutes and hours inside the window from the roll-ups
where they are done, and only the edges and what is not rolled up yet at the
resolution: the same merge (counts, sums, extremes, sketch bins), from about 23
hour buckets, at most 22 five-minute and 8 minute buckets per series for a day
instead of 1,440 (:meth:`.buckets.Levels.window_segments`). :meth:`TelemetryQueries.metric_points`
reads each step at the resolution, stitched; :meth:`TelemetryQueries.busiest_minute`
reads the busiest minute of each whole hour from the hour roll-up's record of it.

Security events counted by type and address (:meth:`TelemetryQueries.count_by`,
:meth:`TelemetryQueries.count_distinct`) take their whole hours from the
retention job's counts per hour, address and type, and the rest from the events:
the same sums and values from one row per (hour, address, type).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, bindparam, func, select, union, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from digitalme.monitoring.storage import schema
from digitalme.monitoring.storage.buckets import (
    cooperatively,
    read_levels,
    read_segments,
    rollup_marks,
    stitch,
)
from digitalme.monitoring.storage.errors import QueryError
from digitalme.monitoring.storage.merging import BucketMerger
from digitalme.monitoring.telemetry.items import ItemKind
from digitalme.monitoring.telemetry.sketch import Bucket
from digitalme.monitoring.telemetry.users import PERIOD

RESOLUTIONS = schema.RESOLUTIONS
SPAN_LIMITS: Mapping[int, float] = {
    10: 6 * 3600.0,
    60: 7 * 86400.0,
    300: 90 * 86400.0,
    3600: math.inf,
}
"""Longest window (seconds) each resolution serves when the caller gives none."""
MAX_RECENT = 10_000
MINUTE, HOUR = 60, 3600
SECURITY_HOUR_COLUMNS = frozenset({"event_type", "client_ip"})
"""The columns of security events that their hour roll-up keeps (besides the weight)."""
PROPERTY_PREFIX = "properties."
"""A ``column`` of :meth:`TelemetryQueries.count_distinct` starting with this names a
property: ``"properties.AuthenticatedUserId"`` is the user of the item's request."""


class Aggregation(StrEnum):
    """What :meth:`TelemetryQueries.metric_points` computes per step."""

    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    RATE = "rate"  # count per second
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"

    @property
    def quantile(self) -> float | None:
        """0.5 for ``p50`` and so on; None for the other aggregations."""
        return int(self.value[1:]) / 100 if self.value.startswith("p") else None


class TelemetryQueries:
    """The read side of the store, shared by the dashboard and the alert engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def metric_names(self) -> list[str]:
        """Names of every metric series ever written, sorted."""
        table = schema.metric_series
        async with self.engine.connect() as connection:
            result = await connection.execute(select(table.c.name).distinct())
            return sorted(result.scalars())

    async def series(self, name: str) -> list[dict[str, str]]:
        """The dimension sets of ``name``'s series, sorted."""
        async with self.engine.connect() as connection:
            found = await _series(connection, name)
        return sorted(found.values(), key=lambda dims: sorted(dims.items()))

    async def metric_window(
        self,
        name: str,
        start: float,
        end: float,
        *,
        where: Mapping[str, str] | None = None,
        group_by: Sequence[str] = (),
        resolution: int | None = None,
        sketches: bool = True,
    ) -> list[tuple[dict[str, str], Bucket]]:
        """One merged :class:`Bucket` per group of ``name``'s series over ``[start, end)``.

        ``where`` keeps series whose dimensions equal the given values; groups are
        the values of the ``group_by`` dimensions ("" when a series lacks one),
        sorted. Groups without data are left out, so no data at all gives ``[]``.
        The merged bucket's ``start`` is ``start`` and its ``resolution`` the window
        length rounded up. Without ``resolution``, one is chosen as the module says
        and the whole minutes and hours inside the window come from the roll-ups;
        an explicit one reads every bucket at it (stitched). Without ``sketches`` the
        buckets' sketches are neither read nor merged (the merged buckets' are empty):
        for counts, sums and extremes.
        """
        _check_window(start, end)
        if resolution is not None and resolution not in RESOLUTIONS:
            raise QueryError("resolution", f"must be one of {RESOLUTIONS}")
        groups: dict[tuple[str, ...], BucketMerger] = {}
        async with self.engine.connect() as connection:
            series = await _series(connection, name, where)
            if not series:
                return []
            levels = await read_levels(connection)
            if resolution is None:  # the same buckets, whole periods read from roll-ups
                allowed = [r for r in RESOLUTIONS if SPAN_LIMITS[r] >= end - start]
                resolution = levels.choose(allowed, start)
                parts = levels.window_segments(resolution, start, end)
            else:
                parts = stitch(resolution, start, end, levels.done)
            keys = {sid: tuple(dims.get(d, "") for d in group_by) for sid, dims in series.items()}
            rows = await read_segments(connection, keys, parts, sketch=sketches)
            async for row in cooperatively(rows):
                group = groups.get(keys[row["series_id"]])
                if group is None:
                    groups[keys[row["series_id"]]] = group = BucketMerger()
                if sketches:
                    group.add(row)
                else:
                    group.add_numbers(row)
        length = max(1, math.ceil(end - start))
        return [
            (dict(zip(group_by, key, strict=True)), groups[key].bucket(start, length))
            for key in sorted(groups)
        ]

    async def metric_points(
        self,
        name: str,
        agg: Aggregation | str,
        step: float,
        start: float,
        end: float,
        *,
        where: Mapping[str, str] | None = None,
        max_points: int = 500,
        instance: str | None = None,
    ) -> list[tuple[float, float | None]]:
        """``(step start, value)`` for each step of ``[start, end)``, for charts.

        Empty steps give 0 for count, sum and rate, None for the others. ``rate``
        is count per second of the step (the last step may be shorter). Every
        instance's values are merged, or only ``instance``'s are read. Raises
        :class:`QueryError` naming the argument when ``step`` gives more than
        ``max_points`` points or an argument is invalid.
        """
        try:
            aggregation = Aggregation(agg)
        except ValueError:
            raise QueryError("agg", f"must be one of {[a.value for a in Aggregation]}") from None
        _check_window(start, end)
        if not step > 0 or not math.isfinite(step):
            raise QueryError("step", "must be a positive number of seconds")
        points = math.ceil((end - start) / step)
        if points > max_points:
            raise QueryError("step", f"gives {points} points, more than max_points={max_points}")
        length = max(1, math.ceil(step))
        steps = [Bucket(start + i * step, length) for i in range(points)]
        sketches = [BucketMerger() for _ in steps] if aggregation.quantile is not None else []
        async with self.engine.connect() as connection:
            series = await _series(connection, name, where)
            if series:
                fits = [r for r in RESOLUTIONS if r <= step] or [RESOLUTIONS[0]]
                allowed = [r for r in RESOLUTIONS if r >= fits[-1]]
                levels = await read_levels(connection)
                resolution = levels.choose(allowed, start)
                keys = dict.fromkeys(series, ())
                # without sketches, the database adds up the series of each start
                rows = await read_segments(
                    connection,
                    keys,
                    stitch(resolution, start, end, levels.done),
                    sketch=bool(sketches),
                    merged=not sketches,
                    instance=instance,
                )
                async for row in cooperatively(rows):
                    index = min(int((row["start"] - start) // step), points - 1)
                    if sketches:
                        sketches[index].add(row)
                    else:  # no sketch read: fold the numbers only
                        target = steps[index]
                        target.count += row["count"]
                        target.sum += row["sum"]
                        target.min = min(target.min, row["min"])
                        target.max = max(target.max, row["max"])
        if sketches:
            steps = [
                merger.bucket(b.start, length) for merger, b in zip(sketches, steps, strict=True)
            ]
        return [(b.start, bucket_value(aggregation, b, min(step, end - b.start))) for b in steps]

    async def busiest_minute(
        self, name: str, start: float, end: float
    ) -> tuple[float, float] | None:
        """``(peak, last)``: the most values ``name`` recorded in one minute of ``[start,
        end)`` (whole minutes: multiples of 60) and how many in its last minute, every
        series and instance added up; None when ``name`` has no series.

        The same counts as :meth:`metric_points` with ``count`` per 60 s step (minute
        buckets, stitched with the 10 s ones not rolled up yet), with empty minutes as 0,
        but whole hours rolled up with their busiest minute (``telemetry_minute_peaks``,
        :mod:`.retention`) read that one row instead of their 60 minutes. The edges,
        the hour of the last minute and hours rolled up without one (before migration
        0006) are read minute by minute.
        """
        _check_window(start, end)
        if start % MINUTE or end % MINUTE:
            raise QueryError("start", "start and end must be whole minutes")
        peaks: dict[float, int] = {}
        counts: dict[float, int] = {}
        async with self.engine.connect() as connection:
            series = await _series(connection, name)
            if not series:
                return None
            done = await rollup_marks(connection)  # the earliest buckets are not needed
            lower = math.ceil(start / HOUR) * HOUR
            upper = min(math.floor((end - MINUTE) / HOUR) * HOUR, done.get(HOUR, -math.inf))
            if lower < upper:
                table = schema.minute_peaks
                result = await connection.execute(
                    select(table.c.hour, table.c.count).where(
                        table.c.name == name, table.c.hour >= lower, table.c.hour < upper
                    )
                )
                peaks = {float(hour): int(count) for hour, count in result}
            for first, last in _minute_ranges(start, end, lower, upper, peaks):
                rows = await read_segments(
                    connection, series, stitch(MINUTE, first, last, done), sketch=False, merged=True
                )
                for row in rows:
                    minute = math.floor(row["start"] / MINUTE) * MINUTE
                    counts[minute] = counts.get(minute, 0) + int(row["count"])
        peak = max(max(peaks.values(), default=0), max(counts.values(), default=0))
        return float(peak), float(counts.get(end - MINUTE, 0))

    async def count_items(
        self,
        kind: ItemKind | str,
        start: float,
        end: float,
        *,
        where: Mapping[str, object] | None = None,
    ) -> float:
        """Weighted count (sum of sampling weights) of ``kind`` items in ``[start, end)``.

        ``where`` holds equality filters on the kind's columns, for example
        ``{"success": False}`` or ``{"event_type": "RateLimit"}``; None matches NULL,
        and a list, tuple or set any of its values (``{"client_ip": ["a", "b"]}``).
        """
        _check_window(start, end)
        table = _item_table(kind)
        statement = select(func.coalesce(func.sum(table.c.weight), 0.0)).where(
            table.c.ts >= start, table.c.ts < end, *_filters(table, where)
        )
        async with self.engine.connect() as connection:
            return float((await connection.execute(statement)).scalar_one())

    async def count_by(
        self,
        kind: ItemKind | str,
        group_by: Sequence[str],
        start: float,
        end: float,
        *,
        where: Mapping[str, object] | None = None,
        limit: int | None = None,
    ) -> list[tuple[tuple[Any, ...], float]]:
        """Weighted counts of ``kind`` items in ``[start, end)`` per distinct value of the
        ``group_by`` columns, as ``(values, count)``: the largest count first, ties in the
        order of the values (NULL last), at most ``limit`` groups.

        ``count_by(ItemKind.SECURITY_EVENT, ["client_ip"], start, end, limit=10)`` gives
        the ten addresses with the most security events. ``where`` is as for
        :meth:`count_items`.
        """
        _check_window(start, end)
        if limit is not None and not 1 <= limit <= MAX_RECENT:
            raise QueryError("limit", f"must be between 1 and {MAX_RECENT}")
        table = _item_table(kind)
        if not group_by:
            raise QueryError("group_by", "name at least one column")
        for column in group_by:
            _comparable(table, column, "group_by")
        async with self.engine.connect() as connection:
            source = await _weights(connection, table, [*group_by, *(where or {})], start, end)
            if len(source) == 1:
                rows, conditions = source[0]
                conditions = [*conditions, *_filters(rows, where)]
            else:  # each part counted on its own, then added up
                rows = union_all(
                    *(
                        select(
                            *(part.c[c] for c in group_by), func.sum(part.c.weight).label("weight")
                        )
                        .where(*part_conditions, *_filters(part, where))
                        .group_by(*(part.c[c] for c in group_by))
                        for part, part_conditions in source
                    )
                ).subquery()
                conditions = []
            columns = [rows.c[column] for column in group_by]
            weight = func.sum(rows.c.weight).label("weighted")
            statement = (
                select(*columns, weight)
                .where(*conditions)
                .group_by(*columns)
                .order_by(weight.desc(), *(column.asc().nulls_last() for column in columns))
            )
            if limit is not None:
                statement = statement.limit(limit)
            result = await connection.execute(statement)
            return [(tuple(row[:-1]), float(row[-1])) for row in result]

    async def count_distinct(
        self,
        kind: ItemKind | str,
        column: str,
        start: float,
        end: float,
        *,
        where: Mapping[str, object] | None = None,
    ) -> int:
        """How many distinct non-NULL values ``column`` takes on ``kind`` items in
        ``[start, end)`` (for example the client IPs that hit the rate limit).

        ``column`` is a column of the kind's table or ``"properties.<name>"``, a
        property as text (items without it do not count). The count ignores
        sampling weights: an item sampled out is a value that may be missing.
        """
        _check_window(start, end)
        table = _item_table(kind)
        _distinct_target(table, column)
        async with self.engine.connect() as connection:
            source = await _weights(connection, table, [column, *(where or {})], start, end)
            if len(source) == 1:  # the items alone: the column may be a property
                part, conditions = source[0]
                target = _distinct_target(part, column)
                statement = select(func.count(target.distinct())).where(
                    *conditions, *_filters(part, where)
                )
            else:
                values = union(
                    *(
                        select(part.c[column].label("value")).where(
                            *conditions, *_filters(part, where)
                        )
                        for part, conditions in source
                    )
                ).subquery()
                statement = select(func.count(values.c.value))  # union: distinct, NULL once
                statement = statement.where(values.c.value.is_not(None))
            return int((await connection.execute(statement)).scalar_one())

    async def active_user_sketches(self, start: float, end: float) -> list[tuple[float, bytes]]:
        """``(start, serialized HLL sketch)`` of the active users of ``[start, end)``, oldest
        first (:mod:`~digitalme.monitoring.telemetry.users`): one sketch of every instance
        for each whole 5-minute period (``users.PERIOD``, periods of epoch time) inside
        the window that the retention job has rolled up, and every instance's minute
        sketches for the rest. A minute belongs to the window when its start does; the
        union of the sketches is that of the window's minutes.
        """
        _check_window(start, end)
        minutes, periods = schema.active_users, schema.active_user_periods
        lower = math.ceil(start / PERIOD) * PERIOD
        upper = math.floor(end / PERIOD) * PERIOD
        async with self.engine.connect() as connection:
            if lower < upper:
                done = await item_mark(connection, schema.ACTIVE_USER_PERIODS)
                upper = lower if done is None else min(upper, done // PERIOD * PERIOD)
            whole = lower < upper  # periods rolled up inside the window
            ranges = [(start, lower), (upper, end)] if whole else [(start, end)]
            parts = [
                select(minutes.c.minute.label("start"), minutes.c.sketch).where(
                    minutes.c.minute >= first, minutes.c.minute < last
                )
                for first, last in ranges
                if first < last
            ]
            if whole:
                parts.append(
                    select(periods.c.start, periods.c.sketch).where(
                        periods.c.start >= lower, periods.c.start < upper
                    )
                )
            query = union_all(*parts) if len(parts) > 1 else parts[0]
            query = query.order_by(query.selected_columns.start)
            return [
                (float(first), bytes(sketch)) for first, sketch in await connection.execute(query)
            ]

    async def recent(
        self,
        kind: ItemKind | str,
        limit: int,
        *,
        since: float | None = None,
        until: float | None = None,
        where: Mapping[str, object] | None = None,
    ) -> list[dict[str, Any]]:
        """The latest ``limit`` items of ``kind`` (newest first) as column dicts, of
        those in ``[since, until)`` when given."""
        if not 1 <= limit <= MAX_RECENT:
            raise QueryError("limit", f"must be between 1 and {MAX_RECENT}")
        table = _item_table(kind)
        statement = select(table).where(*_filters(table, where))
        if since is not None:
            statement = statement.where(table.c.ts >= since)
        if until is not None:
            statement = statement.where(table.c.ts < until)
        statement = statement.order_by(table.c.ts.desc(), table.c.id.desc()).limit(limit)
        async with self.engine.connect() as connection:
            result = await connection.execute(statement)
            return [dict(row._mapping) for row in result]


def _minute_ranges(
    start: float, end: float, lower: float, upper: float, peaks: Mapping[float, int]
) -> list[tuple[float, float]]:
    """The parts of ``[start, end)`` to read minute by minute: all of it but the hours of
    ``[lower, upper)`` that have their busiest minute in ``peaks`` (adjacent parts joined)."""
    if lower >= upper:
        return [(start, end)]
    ranges: list[tuple[float, float]] = []
    cursor = start
    hour = lower
    while hour < upper:
        if hour in peaks:
            if cursor < hour:
                ranges.append((cursor, hour))
            cursor = hour + HOUR
        hour += HOUR
    if cursor < end:
        ranges.append((cursor, end))
    return ranges


async def _weights(
    connection: AsyncConnection, table: Any, columns: Sequence[str], start: float, end: float
) -> list[tuple[Any, list[Any]]]:
    """Where the items of ``table`` in ``[start, end)`` are counted, as ``(table, conditions)``
    pairs: the items themselves, or, for security events asked about by type and address
    only, the whole hours the retention job has counted (``telemetry_security_hours``,
    one row per hour, address and type, with the weights added up) and the items of
    the edges and of the hours not counted yet. Both give the same sums and values.
    """
    lower = math.ceil(start / HOUR) * HOUR
    upper = math.floor(end / HOUR) * HOUR
    if (
        table is not schema.security_events
        or lower >= upper
        or not set(columns) <= SECURITY_HOUR_COLUMNS
    ):
        return [(table, [table.c.ts >= start, table.c.ts < end])]
    done = await item_mark(connection, schema.SECURITY_HOURS)
    upper = min(upper, math.floor(done / HOUR) * HOUR) if done is not None else lower
    if lower >= upper:
        return [(table, [table.c.ts >= start, table.c.ts < end])]
    hours = schema.security_hours
    return [
        (hours, [hours.c.hour >= lower, hours.c.hour < upper]),
        *(
            (table, [table.c.ts >= first, table.c.ts < last])
            for first, last in ((start, lower), (upper, end))
            if first < last
        ),
    ]


def _check_window(start: float, end: float) -> None:
    if not (math.isfinite(start) and math.isfinite(end)):
        raise QueryError("start", "start and end must be finite epoch seconds")
    if end <= start:
        raise QueryError("end", "must be after start")


def _item_table(kind: ItemKind | str) -> Any:
    try:
        return schema.ITEM_TABLES[ItemKind(kind)]
    except ValueError:
        raise QueryError("kind", f"must be one of {[k.value for k in ItemKind]}") from None


def _comparable(table: Any, column: str, argument: str) -> Any:
    """``table``'s column named ``column``, refused (naming ``argument``) when JSON or absent."""
    if column not in table.c or isinstance(table.c[column].type, JSON):
        raise QueryError(argument, f"no comparable column {column!r} on {table.name}")
    return table.c[column]


def _distinct_target(table: Any, column: str) -> Any:
    """The column, or the property as text for ``"properties.<name>"``."""
    if column.startswith(PROPERTY_PREFIX):
        name = column.removeprefix(PROPERTY_PREFIX)
        if not name:
            raise QueryError("column", f"name a property after {PROPERTY_PREFIX!r}")
        return table.c.properties[name].as_string()
    return _comparable(table, column, "column")


def _filters(table: Any, where: Mapping[str, object] | None) -> list[Any]:
    """Equality filters; None matches NULL, and a list, tuple or set matches any of its values."""
    conditions = []
    for column, value in (where or {}).items():
        target = _comparable(table, column, "where")
        if value is None:
            conditions.append(target.is_(None))
        elif isinstance(value, list | tuple | set | frozenset):
            conditions.append(target.in_(list(value)))
        else:
            conditions.append(target == value)
    return conditions


_ITEM_MARK = select(schema.item_rollups.c.done_until).where(
    schema.item_rollups.c.name == bindparam("name")
)
_SERIES = select(schema.metric_series.c.id, schema.metric_series.c.dimensions).where(
    schema.metric_series.c.name == bindparam("name")
)
# (statements read on every dashboard read are built once: building one costs more than
# running it)


async def item_mark(connection: AsyncConnection, name: str) -> float | None:
    """How far the item roll-up ``name`` is done (None: not started)."""
    done: float | None = (await connection.execute(_ITEM_MARK, {"name": name})).scalar()
    return done


async def _series(
    connection: AsyncConnection, name: str, where: Mapping[str, str] | None = None
) -> dict[int, dict[str, str]]:
    result = await connection.execute(_SERIES, {"name": name})
    wanted = dict(where or {})
    return {series_id: dims for series_id, dims in result if dims_match(dims, wanted)}


def dims_match(dims: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Whether a series' ``dims`` pass the filters ``wanted``: equal values, or, for a
    value ending in ``*``, any value that starts with what precedes it (``5*``)."""
    for key, value in wanted.items():
        found = dims.get(key)
        if found is None:
            return False
        if value.endswith("*"):
            if not found.startswith(value[:-1]):
                return False
        elif found != value:
            return False
    return True


def bucket_value(aggregation: Aggregation, bucket: Bucket, seconds: float) -> float | None:
    """One step's value from its merged bucket; ``seconds``: the step's length (for rates)."""
    if aggregation is Aggregation.COUNT:
        return float(bucket.count)
    if aggregation is Aggregation.SUM:
        return bucket.sum
    if aggregation is Aggregation.RATE:
        return bucket.count / seconds
    if bucket.count == 0:
        return None
    if aggregation is Aggregation.AVG:
        return bucket.sum / bucket.count
    if aggregation is Aggregation.MIN:
        return bucket.min
    if aggregation is Aggregation.MAX:
        return bucket.max
    return bucket.quantile(aggregation.quantile or 0.5)
