"""Retention: exact, idempotent roll-ups; stitched queries; deletion; the background job."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import delete, func, select

from digitalme.monitoring.storage import (
    CompactionReport,
    RetentionJob,
    TelemetryStore,
    compact,
    schema,
)
from digitalme.monitoring.telemetry.items import EventItem, ItemKind, RequestItem
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import RetentionSettings

T0 = 1_767_225_600.0  # a multiple of 3600
HOUR, DAY = 3600.0, 86400.0
NAME = "Dependency.Duration"
KEYS = [SeriesKey(NAME, (("target", target),)) for target in ("db", "claude")]
RETENTION = RetentionSettings()

Values = dict[tuple[str, str, float], list[float]]  # (target, instance, 10 s start) -> values


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


async def _write_buckets(store: TelemetryStore, start: float, minutes: int) -> Values:
    """10 s buckets for two series on two instances over ``minutes`` from ``start``."""
    rng = random.Random(11)
    data: Values = {}
    for instance in ("web-1", "web-2"):
        buckets: list[tuple[SeriesKey, Bucket]] = []
        for step in range(minutes * 6):
            bucket_start = start + 10 * step
            for key in KEYS:
                values = [rng.lognormvariate(2, 0.8) for _ in range(rng.randint(1, 4))]
                data[key.dims()["target"], instance, bucket_start] = values
                bucket = Bucket(bucket_start, 10)
                for value in values:
                    bucket.add(value)
                buckets.append((key, bucket))
        await store.write(TelemetryBatch(instance=instance, buckets=buckets))
    return data


async def _levels(store: TelemetryStore) -> dict[int, tuple[int, float]]:
    """Per resolution: total count and total sum over every stored bucket."""
    table = schema.metric_buckets
    statement = select(table.c.resolution, func.sum(table.c.count), func.sum(table.c.sum))
    async with store.engine.connect() as connection:
        result = await connection.execute(statement.group_by(table.c.resolution))
        return {resolution: (int(count), float(total)) for resolution, count, total in result}


async def _snapshot(store: TelemetryStore) -> list[tuple[object, ...]]:
    table = schema.metric_buckets
    statement = select(table).where(table.c.resolution > 10)
    async with store.engine.connect() as connection:
        result = await connection.execute(
            statement.order_by(
                table.c.series_id, table.c.resolution, table.c.start, table.c.instance
            )
        )
        return [tuple(row) for row in result]


async def test_rollups_keep_counts_and_sums_and_percentiles(store: TelemetryStore) -> None:
    data = await _write_buckets(store, T0, 90)
    total = sum(len(v) for v in data.values()), sum(sum(v) for v in data.values())

    report = await compact(store, T0 + 2 * HOUR + 120, RETENTION)

    levels = await _levels(store)
    assert set(levels) == {10, 60, 300, 3600}
    for count, value_sum in levels.values():
        assert count == total[0]
        assert abs(value_sum - total[1]) <= 1e-9 * total[1]
    assert report.rolled_up == {60: 2 * 2 * 90, 300: 2 * 2 * 18, 3600: 2 * 2 * 2}
    for target in ("db", "claude"):
        first_hour = [
            v for (t, _, s), vs in data.items() if t == target and s < T0 + HOUR for v in vs
        ]
        [(_, bucket)] = await store.query.metric_window(
            NAME, T0, T0 + HOUR, where={"target": target}, resolution=3600
        )
        assert bucket.count == len(first_hour)
        p95 = bucket.quantile(0.95)
        assert p95 is not None
        assert abs(p95 - exact_quantile(first_hour, 0.95)) <= 0.01 * exact_quantile(
            first_hour, 0.95
        )


async def test_compaction_is_idempotent(store: TelemetryStore) -> None:
    await _write_buckets(store, T0, 70)
    now = T0 + 2 * HOUR

    await compact(store, now, RETENTION)
    first = await _snapshot(store)
    again = await compact(store, now, RETENTION)
    second = await _snapshot(store)
    async with store.engine.begin() as connection:  # forget the progress: everything is redone
        await connection.execute(delete(schema.rollups))
    await compact(store, now, RETENTION)
    third = await _snapshot(store)

    assert first
    assert again.rolled_up == {60: 0, 300: 0, 3600: 0}
    assert first == second == third


async def test_queries_stitch_rolled_up_and_fresh_buckets(store: TelemetryStore) -> None:
    data = await _write_buckets(store, T0, 100)
    count = sum(len(v) for v in data.values())
    windows = [(T0, T0 + 6000), (T0 - DAY, T0 + 6000), (T0 + 1200, T0 + 4800)]

    def expected(start: float, end: float) -> int:
        return sum(len(v) for (_, _, s), v in data.items() if start <= s < end)

    # partly compacted: minutes done up to T0+49 min, no hour yet; then fully
    for now in (T0 + 50 * 60, T0 + 2 * HOUR):
        await compact(store, now, RETENTION)
        for resolution in (10, 60, 3600, None):
            for start, end in windows:
                if resolution == 3600 and start % HOUR:
                    continue  # a whole hour bucket counts where it starts: not comparable
                result = await store.query.metric_window(NAME, start, end, resolution=resolution)
                assert sum(b.count for _, b in result) == expected(start, end), (now, resolution)
        points = await store.query.metric_points(NAME, "count", HOUR, T0, T0 + 2 * HOUR)
        assert sum(v or 0 for _, v in points) == count


async def test_deletion_follows_each_retention(store: TelemetryStore) -> None:
    old = T0 - 10 * DAY
    await _write_buckets(store, old, 120)
    await store.write(
        TelemetryBatch(
            items=[
                EventItem(time=old, name="old"),
                EventItem(time=T0, name="new"),
                RequestItem(time=old, name="GET /", duration_ms=1, status_code=200, success=True),
            ]
        )
    )
    retention = RetentionSettings(
        raw_items_days=5,
        buckets_10s_days=1,
        buckets_1m_days=5,
        buckets_5m_days=5,
        buckets_1h_days=30,
    )

    report = await compact(store, T0, retention)

    assert report.deleted_items == 2
    assert [row["name"] for row in await store.query.recent(ItemKind.EVENT, 10)] == ["new"]
    assert set(await _levels(store)) == {3600}  # 10 s, 60 s and 300 s buckets are past retention
    [(_, bucket)] = await store.query.metric_window(NAME, old, old + 2 * HOUR)
    assert bucket.count == sum((await _levels(store))[3600][:1])

    await compact(store, T0 + 40 * DAY, retention)
    assert await _levels(store) == {}


async def test_fine_buckets_are_not_deleted_before_they_are_rolled_up(
    store: TelemetryStore,
) -> None:
    await _write_buckets(store, T0 - 3 * DAY, 10)

    # a settle time longer than the data's age: nothing is completed, so nothing rolls up
    report = await compact(store, T0, RETENTION, settle=10 * DAY)

    assert report.rolled_up == {60: 0, 300: 0, 3600: 0}
    assert set(await _levels(store)) == {10}


class ObservedJob(RetentionJob):
    """A retention job that tells when a run has ended, whatever its outcome."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ran = asyncio.Event()

    async def run_once(self) -> CompactionReport:
        try:
            return await super().run_once()
        finally:
            self.ran.set()

    async def first_run(self) -> None:
        async with asyncio.timeout(30):
            await self.ran.wait()


async def test_retention_job_runs_in_the_background(
    store: TelemetryStore, clock: FakeClock
) -> None:
    clock.advance(T0 + 2 * HOUR - clock.time())
    await _write_buckets(store, T0, 10)
    job = ObservedJob(store, RETENTION, clock=clock)

    job.start()
    try:
        await job.first_run()
    finally:
        await job.stop()

    assert (job.runs, job.failures) == (1, 0)
    assert job.last_report is not None
    assert job.last_report.rolled_up[60] == 2 * 2 * 10


async def test_retention_job_logs_failures_and_keeps_going(
    tmp_path: Path, settle_sqlite_threads: Callable[[], Awaitable[None]]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = TelemetryStore(f"sqlite+aiosqlite:///{blocker / 'telemetry.db'}")
    job = ObservedJob(store, RetentionSettings(interval=1), clock=FakeClock())

    with structlog.testing.capture_logs() as logs:
        job.start()
        try:
            await job.first_run()
        finally:
            await job.stop()
            await store.close()
            await settle_sqlite_threads()

    assert (job.runs, job.failures) == (1, 1)
    assert job.last_report is None
    assert logs[0]["event"] == "telemetry retention failed"
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["error"] == "OperationalError"
