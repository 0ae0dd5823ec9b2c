"""Retention of the telemetry store: roll-ups of completed buckets, then deletion.

:func:`compact` rolls completed buckets up level by level (:data:`~.schema.
RESOLUTIONS`): 10 s into 60 s, 60 s into 300 s and 300 s into 3600 s (counts and
sums add, sketches merge), per series and instance, and records in
``telemetry_rollups`` how far each level is done; queries read coarse buckets
before that point and finer ones after it. The 5-minute level keeps the edges
of a long window short (a day read from hours needs at most 11 five-minute
buckets and 4 minutes on each side instead of 59 minutes) and serves charts in
5-minute steps (a day's chart reads 288 buckets per series instead of 1,440).
Rolling minutes up, it records each hour's busiest minute per metric name
(``telemetry_minute_peaks``: the largest count of one minute, every series and
instance added up; a chunk cut inside an hour keeps the larger of what each part
found), so the peak per minute of a long window reads one row per whole hour. It
rolls completed hours
of security events up into counts per hour, address and type
(``telemetry_security_hours``, done up to the ``security_hours`` mark of
``telemetry_item_rollups``), starting from the oldest stored event, and every
instance's active-user sketches of each completed 5-minute period into one
(``telemetry_active_user_periods``, up to the ``active_user_periods`` mark), so
that a day's active users unite 288 sketches instead of 1,440 per instance and
its 5-minute slices need no union at all. It then deletes raw items and buckets
older than their retention, never fine buckets that are not rolled up yet, and the
roll-ups with what they were made from (the security hours once all their events
are gone, the minute peaks with the hour buckets, the user periods with the
minutes).

A bucket is *completed* once its period ended ``settle`` seconds ago, which
leaves the pipeline time to deliver its last update. Re-running gives the same
result: roll-ups are recomputed from the fine buckets (or the events) and
upserted (or replaced), and a level only moves forward. A fine bucket updated
after its period was rolled up (a pipeline outage longer than ``settle``) stays
in the fine level only, and so does a security event stored after its hour was
and a minute of active users updated after its period was.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Column, Double, RowMapping, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.storage import schema
from digitalme.monitoring.storage.buckets import cooperatively, rollup_marks
from digitalme.monitoring.storage.merging import BucketMerger
from digitalme.monitoring.storage.queries import item_mark
from digitalme.monitoring.storage.store import TelemetryStore
from digitalme.monitoring.telemetry import users
from digitalme.monitoring.telemetry.sketch import sketch_to_bytes
from digitalme.settings import RetentionSettings

SETTLE = 60.0  # seconds after a period's end before its buckets count as completed
FINE_BUCKETS_PER_CHUNK = 60  # fine buckets per series read at once: bounds memory
DAY = 86400.0
MINUTE, HOUR = 60, 3600
SECURITY_HOURS = schema.SECURITY_HOURS
ACTIVE_USER_PERIODS = schema.ACTIVE_USER_PERIODS
USER_PERIODS_PER_CHUNK = 12  # 5-minute periods of active users rolled up per transaction

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class CompactionReport:
    """What one :func:`compact` run did."""

    rolled_up: dict[int, int] = field(default_factory=dict)  # coarse resolution -> buckets
    security_hours: int = 0  # hours of security events rolled up
    user_periods: int = 0  # 5-minute periods of active users rolled up
    deleted_rollups: int = 0  # minute peaks, security hours and user periods past retention
    deleted_items: int = 0
    deleted_buckets: int = 0


async def compact(
    store: TelemetryStore, now: float, retention: RetentionSettings, *, settle: float = SETTLE
) -> CompactionReport:
    """Roll up completed buckets, then delete what is past retention (epoch ``now``)."""
    report = CompactionReport()
    levels = schema.RESOLUTIONS
    for fine, coarse in itertools.pairwise(levels):
        report.rolled_up[coarse] = await _roll_up(store, fine, coarse, now - settle)
    report.security_hours = await _roll_up_security(store, now - settle)
    report.user_periods = await _roll_up_users(store, now - settle)
    deleted = await _delete_expired(store, now, retention)
    report.deleted_items, report.deleted_buckets, report.deleted_rollups = deleted
    return report


def _floor(value: float, resolution: int) -> int:
    return math.floor(value / resolution) * resolution


async def _first_start(connection: AsyncConnection, resolution: int, lower: float) -> float | None:
    table = schema.metric_buckets
    statement = select(func.min(table.c.start)).where(
        table.c.resolution == resolution, table.c.start >= lower
    )
    first: float | None = (await connection.execute(statement)).scalar()
    return first


async def _roll_up(store: TelemetryStore, fine: int, coarse: int, settled: float) -> int:
    """Roll ``fine`` buckets of periods completed by ``settled`` into ``coarse`` ones."""
    async with store.engine.connect() as connection:
        done = await rollup_marks(connection)
        # a coarse period needs every fine bucket of it, themselves rolled up if not the base
        ready = done.get(fine, -math.inf) if fine != schema.RESOLUTIONS[0] else math.inf
        cutoff = _floor(min(settled, ready), coarse) if math.isfinite(min(settled, ready)) else None
        lower = done.get(coarse)
        if lower is None:
            lower = await _first_start(connection, fine, -math.inf)
    if cutoff is None or lower is None or lower >= cutoff:
        return 0
    chunk = coarse * max(1, FINE_BUCKETS_PER_CHUNK * fine // coarse)
    cursor = float(_floor(lower, coarse))
    written = 0
    while cursor < cutoff:
        async with store.engine.begin() as connection:
            first = await _first_start(connection, fine, cursor)
            if first is None or first >= cutoff:
                await _advance(store, connection, coarse, cutoff)
                break
            cursor = float(_floor(first, coarse))
            upper = min(cursor + chunk, float(cutoff))
            written += await _roll_chunk(store, connection, fine, coarse, cursor, upper)
            await _advance(store, connection, coarse, upper)
        cursor = upper
    return written


async def _roll_chunk(
    store: TelemetryStore,
    connection: AsyncConnection,
    fine: int,
    coarse: int,
    lower: float,
    upper: float,
) -> int:
    table = schema.metric_buckets
    result = await connection.execute(
        select(table)
        .where(table.c.resolution == fine, table.c.start >= lower, table.c.start < upper)
        .order_by(table.c.series_id, table.c.instance, table.c.start)
    )
    merged: dict[tuple[int, str, float], BucketMerger] = {}
    result_rows = result.mappings().all()
    async for row in cooperatively(result_rows):
        key = (row["series_id"], row["instance"], float(_floor(row["start"], coarse)))
        target = merged.get(key)
        if target is None:
            merged[key] = target = BucketMerger()
        target.add(row)
    rows = [
        {
            "series_id": series_id,
            "resolution": coarse,
            "start": period,
            "instance": instance,
            "count": target.count,
            "sum": target.sum,
            "min": target.min,
            "max": target.max,
            "sketch": sketch_to_bytes(target.sketches.sketch()),
        }
        for (series_id, instance, period), target in merged.items()
        if target.count > 0
    ]
    if rows:
        await connection.execute(store.bucket_upsert(), rows)
    if fine == MINUTE:
        await _write_peaks(store, connection, result_rows)
    return len(rows)


async def _write_peaks(
    store: TelemetryStore, connection: AsyncConnection, rows: Sequence[RowMapping]
) -> None:
    """Record the busiest minute of each hour in ``rows`` (minute buckets) per metric name:
    every series and instance of the name added up. An hour already recorded keeps the
    larger count, so the parts of an hour rolled up in two chunks give its busiest minute."""
    if not rows:
        return
    series = schema.metric_series
    result = await connection.execute(select(series.c.id, series.c.name))
    names: dict[int, str] = {series_id: name for series_id, name in result}
    minutes: defaultdict[tuple[str, float], int] = defaultdict(int)
    for row in rows:
        minutes[names[row["series_id"]], row["start"]] += row["count"]
    peaks: dict[tuple[str, float], int] = {}
    for (name, minute), count in minutes.items():
        period = (name, float(_floor(minute, HOUR)))
        peaks[period] = max(peaks.get(period, 0), count)
    table = schema.minute_peaks
    statement: Any = store.dialect_insert(table)
    excluded = statement.excluded["count"]
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.name, table.c.hour],
        # the larger of the two (GREATEST on PostgreSQL, max() on SQLite: a CASE is both)
        set_={"count": case((excluded > table.c["count"], excluded), else_=table.c["count"])},
    )
    values = [{"name": name, "hour": hour, "count": count} for (name, hour), count in peaks.items()]
    await connection.execute(statement, values)


ChunkWork = Callable[[AsyncConnection, float, float], Awaitable[int]]


async def _first_at(connection: AsyncConnection, time: Column[Any], lower: float) -> float | None:
    """The earliest ``time`` (a column of epoch seconds) at or after ``lower``."""
    first: float | None = (
        await connection.execute(select(func.min(time)).where(time >= lower))
    ).scalar()
    return first


async def _roll_up_items(
    store: TelemetryStore,
    mark: str,
    time: Column[Any],
    period: int,
    settled: float,
    work: ChunkWork,
    *,
    periods_per_chunk: int = 1,
) -> int:
    """Roll up the rows whose ``time`` falls in each ``period`` completed by ``settled``,
    from the ``mark`` of ``telemetry_item_rollups`` on (from the first row on the first run),
    ``periods_per_chunk`` periods a transaction: ``work(connection, lower, upper)`` replaces
    the roll-ups of ``[lower, upper)`` and returns how many it wrote. The mark moves first:
    an instance rolling the same chunk up at the same time waits for this transaction on
    the mark's row, then finds it moved and skips the chunk."""
    cutoff = float(_floor(settled, period))
    async with store.engine.connect() as connection:
        lower = await item_mark(connection, mark)
        if lower is None:
            lower = await _first_at(connection, time, -math.inf)
    if lower is None:  # no row yet: nothing to start from
        return 0
    cursor = float(_floor(lower, period))
    written = 0
    while cursor < cutoff:
        async with store.engine.begin() as connection:
            first = await _first_at(connection, time, cursor)
            if first is None or first >= cutoff:
                await _set_item_mark(store, connection, mark, cutoff)
                break
            cursor = float(_floor(first, period))
            upper = min(cursor + periods_per_chunk * period, cutoff)
            if await _set_item_mark(store, connection, mark, upper):
                written += await work(connection, cursor, upper)
        cursor = upper
    return written


async def _roll_up_security(store: TelemetryStore, settled: float) -> int:
    """Count the security events of every hour completed by ``settled`` per address and type."""
    events, table = schema.security_events, schema.security_hours

    async def count_hour(connection: AsyncConnection, hour: float, end: float) -> int:
        await connection.execute(table.delete().where(table.c.hour == hour))
        counts = (
            select(
                literal(hour, Double).label("hour"),
                events.c.event_type,
                events.c.client_ip,
                func.sum(events.c.weight),
            )
            .where(events.c.ts >= hour, events.c.ts < end)
            .group_by(events.c.event_type, events.c.client_ip)
        )
        columns = ["hour", "event_type", "client_ip", "weight"]
        await connection.execute(table.insert().from_select(columns, counts))
        return 1

    return await _roll_up_items(store, SECURITY_HOURS, events.c.ts, HOUR, settled, count_hour)


async def _roll_up_users(store: TelemetryStore, settled: float) -> int:
    """Unite every instance's minute sketches of each 5-minute period completed by
    ``settled`` into one sketch per period (``telemetry_active_user_periods``)."""
    minutes, periods = schema.active_users, schema.active_user_periods
    period = int(users.PERIOD)

    async def unite(connection: AsyncConnection, lower: float, upper: float) -> int:
        result = await connection.execute(
            select(minutes.c.minute, minutes.c.sketch).where(
                minutes.c.minute >= lower, minutes.c.minute < upper
            )
        )
        grouped: defaultdict[float, list[bytes]] = defaultdict(list)
        for minute, sketch in result:
            grouped[float(_floor(minute, period))].append(bytes(sketch))
        rows = [
            {"start": start, "sketch": users.unite(sketches)}
            for start, sketches in sorted(grouped.items())
        ]
        await connection.execute(
            periods.delete().where(periods.c.start >= lower, periods.c.start < upper)
        )
        if rows:
            await connection.execute(periods.insert(), rows)
        return len(rows)

    return await _roll_up_items(
        store,
        ACTIVE_USER_PERIODS,
        minutes.c.minute,
        period,
        settled,
        unite,
        periods_per_chunk=USER_PERIODS_PER_CHUNK,
    )


async def _set_item_mark(
    store: TelemetryStore, connection: AsyncConnection, name: str, done_until: float
) -> bool:
    """Move an item roll-up's mark forward (never back); whether it moved."""
    return await _move_mark(store, connection, schema.item_rollups.c.name, name, done_until)


async def _advance(
    store: TelemetryStore, connection: AsyncConnection, resolution: int, done_until: float
) -> None:
    """Move the level's roll-up point forward (never back)."""
    await _move_mark(store, connection, schema.rollups.c.resolution, resolution, done_until)


async def _move_mark(
    store: TelemetryStore,
    connection: AsyncConnection,
    key: Column[Any],
    value: object,
    done_until: float,
) -> bool:
    """Upsert the ``done_until`` of the row whose ``key`` is ``value`` of a marks table,
    only forward; whether it moved."""
    table = key.table
    statement: Any = store.dialect_insert(table)
    statement = statement.values({key.name: value, "done_until": done_until})
    statement = statement.on_conflict_do_update(
        index_elements=[key],
        set_={"done_until": statement.excluded.done_until},
        where=table.c.done_until < statement.excluded.done_until,
    )
    return bool((await connection.execute(statement)).rowcount)


async def _delete_expired(
    store: TelemetryStore, now: float, retention: RetentionSettings
) -> tuple[int, int, int]:
    items = buckets = 0
    horizon = now - retention.raw_items_days * DAY
    keep_days = {
        10: retention.buckets_10s_days,
        60: retention.buckets_1m_days,
        300: retention.buckets_5m_days,
        3600: retention.buckets_1h_days,
    }
    levels = schema.RESOLUTIONS
    async with store.engine.begin() as connection:
        for table in schema.ITEM_TABLES.values():
            result = await connection.execute(table.delete().where(table.c.ts < horizon))
            items += max(result.rowcount, 0)
        done = await rollup_marks(connection)
        table = schema.metric_buckets
        for index, level in enumerate(levels):
            limit = now - keep_days[level] * DAY
            if index + 1 < len(levels):  # only what the next level already holds
                limit = min(limit, done.get(levels[index + 1], -math.inf))
            result = await connection.execute(
                table.delete().where(table.c.resolution == level, table.c.start < limit)
            )
            buckets += max(result.rowcount, 0)
        # the hour roll-ups go with what they were made from
        peaks = schema.minute_peaks
        result = await connection.execute(
            peaks.delete().where(peaks.c.hour < now - keep_days[HOUR] * DAY)
        )
        rollups = max(result.rowcount, 0)
        hours = schema.security_hours
        result = await connection.execute(hours.delete().where(hours.c.hour + HOUR <= horizon))
        rollups += max(result.rowcount, 0)
        # the active users' minute sketches and periods live as long as the minute buckets
        minutes, periods = schema.active_users, schema.active_user_periods
        result = await connection.execute(
            minutes.delete().where(minutes.c.minute < now - keep_days[60] * DAY)
        )
        buckets += max(result.rowcount, 0)
        result = await connection.execute(
            periods.delete().where(periods.c.start < now - keep_days[60] * DAY)
        )
        rollups += max(result.rowcount, 0)
    return items, buckets, rollups


class RetentionJob:
    """Runs :func:`compact` at start and then every ``retention.interval`` seconds.

    Failures are logged (the error type and message, never the store URL) and
    counted; the loop never raises.
    """

    def __init__(
        self,
        store: TelemetryStore,
        retention: RetentionSettings,
        *,
        clock: Clock | None = None,
        settle: float = SETTLE,
    ) -> None:
        self.store = store
        self.retention = retention
        self.clock: Clock = clock or store.clock
        self.settle = settle
        self.runs = 0
        self.failures = 0
        self.last_report: CompactionReport | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="telemetry-retention")

    async def stop(self) -> None:
        """Stop the loop; a run in progress is cancelled (each step is its own transaction)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> CompactionReport:
        """One compaction now; raises on failure."""
        report = await compact(self.store, self.clock.time(), self.retention, settle=self.settle)
        self.last_report = report
        return report

    async def _loop(self) -> None:
        while True:
            try:
                report = await self.run_once()
            except Exception as exc:
                self.failures += 1
                log.warning(
                    "telemetry retention failed", error=type(exc).__name__, detail=str(exc)[:500]
                )
            else:
                log.debug(
                    "telemetry retention done",
                    rolled_up=report.rolled_up,
                    deleted_items=report.deleted_items,
                    deleted_buckets=report.deleted_buckets,
                )
            self.runs += 1
            await asyncio.sleep(self.retention.interval)
