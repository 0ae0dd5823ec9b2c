"""Long windows read whole minutes and hours from the roll-ups: the same result as a
read of every bucket at the window's resolution, exactly, whatever the roll-up state.

Values are multiples of 1/8, so that sums are exact in any order of addition and
"exactly the same" can be asserted with ``==`` on every figure.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from sqlalchemy import delete, update

from digitalme.monitoring.storage import TelemetryStore, compact, schema
from digitalme.monitoring.storage.buckets import Segment, stitch, whole_periods
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket
from digitalme.settings import RetentionSettings

T0 = 1_767_225_600.0  # a multiple of 86400: "00:00:00" below is T0
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
NAME = "http.server.duration"
ROUTES = ("GET /a", "POST /b")
STATUSES = ("200", "500")
KEYS = [
    SeriesKey(NAME, (("route", route), ("status_code", status)))
    for route in ROUTES
    for status in STATUSES
]
INSTANCES = ("web-1", "web-2")
RETENTION = RetentionSettings()
QUANTILES = (0.01, 0.5, 0.9, 0.95, 0.99, 1.0)

Values = dict[tuple[SeriesKey, float], list[float]]  # (series, 10 s start) -> values


def at(clock: str) -> float:
    """``"07:13:20"`` as epoch seconds after T0 (hours may exceed 23)."""
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return T0 + hours * HOUR + minutes * MINUTE + seconds


async def _fill(
    store: TelemetryStore, start: float, end: float, instances: tuple[str, ...] = INSTANCES
) -> Values:
    """10 s buckets of every series on each instance, most of them non-empty."""
    rng = random.Random(5)
    data: Values = {}
    for instance in instances:
        buckets: list[tuple[SeriesKey, Bucket]] = []
        for index in range(int((end - start) // 10)):
            bucket_start = start + 10 * index
            for key in KEYS:
                if rng.random() < 0.2:
                    continue  # gaps: not every series has every bucket
                values = [rng.randint(1, 40_000) / 8 for _ in range(rng.randint(1, 3))]
                data.setdefault((key, bucket_start), []).extend(values)
                bucket = Bucket(bucket_start, 10)
                for value in values:
                    bucket.add(value)
                buckets.append((key, bucket))
        await store.write(TelemetryBatch(instance=instance, buckets=buckets))
    return data


def _figures(bucket: Bucket) -> tuple[Any, ...]:
    return (
        bucket.start,
        bucket.resolution,
        bucket.count,
        bucket.sum,
        bucket.min,
        bucket.max,
        *(bucket.quantile(q) for q in QUANTILES),
    )


def _flat(groups: list[tuple[dict[str, str], Bucket]]) -> list[tuple[Any, ...]]:
    return [(sorted(dims.items()), *_figures(bucket)) for dims, bucket in groups]


async def _assert_same(
    store: TelemetryStore, start: float, end: float, resolution: int, **kwargs: Any
) -> list[tuple[dict[str, str], Bucket]]:
    """The default read of ``[start, end)`` equals the read forced at ``resolution``."""
    auto = await store.query.metric_window(NAME, start, end, **kwargs)
    forced = await store.query.metric_window(NAME, start, end, resolution=resolution, **kwargs)
    assert _flat(auto) == _flat(forced), (start - T0, end - T0, resolution, kwargs)
    return auto


def _expected(
    data: Values, start: float, end: float, resolution: int, done: float, group_by: tuple[str, ...]
) -> dict[tuple[str, ...], tuple[int, float, float, float]]:
    """Count, sum, min and max per group from the written values, by the rule: a
    ``resolution`` bucket belongs to the window when its start does, and past the
    roll-up mark ``done`` of that resolution the 10 s buckets serve."""
    found: dict[tuple[str, ...], list[float]] = {}
    for (key, bucket_start), values in data.items():
        owner = bucket_start
        if bucket_start < done:
            owner = math.floor(bucket_start / resolution) * resolution
        if start <= owner < end:
            group = tuple(key.dims().get(name, "") for name in group_by)
            found.setdefault(group, []).extend(values)
    return {
        group: (len(values), sum(values), min(values), max(values))
        for group, values in found.items()
    }


async def _assert_values(
    store: TelemetryStore,
    data: Values,
    start: float,
    end: float,
    resolution: int,
    done: float,
    group_by: tuple[str, ...] = (),
) -> None:
    groups = await store.query.metric_window(NAME, start, end, group_by=group_by)
    actual = {
        tuple(dims[name] for name in group_by): (b.count, b.sum, b.min, b.max) for dims, b in groups
    }
    assert actual == _expected(data, start, end, resolution, done, group_by)


GROUPINGS: list[dict[str, Any]] = [
    {},
    {"group_by": ["status_code"]},
    {"group_by": ["route", "status_code"]},
    {"where": {"route": "GET /a"}, "group_by": ["status_code", "absent"]},
    {"where": {"status_code": "5*"}},
]


async def test_unaligned_windows_over_rolled_up_hours_equal_the_fine_read(
    store: TelemetryStore,
) -> None:
    data = await _fill(store, at("00:00:00"), at("09:00:00"))
    await compact(store, at("09:30:00"), RETENTION)  # everything rolled up
    windows = [
        (at("01:13:20"), at("08:47:50"), 60),  # 7.6 h: 60 s buckets
        (at("00:00:00"), at("09:00:00"), 60),  # aligned, all of it
        (at("00:59:59"), at("07:00:01"), 60),
        (at("02:13:25"), at("07:47:55"), 10),  # up to 6 h: 10 s buckets
        (at("03:00:05"), at("08:59:55"), 10),
        (at("05:00:00"), at("06:00:00"), 10),  # one whole hour
    ]
    for index, (start, end, resolution) in enumerate(windows):
        for grouping in GROUPINGS if index in (0, 3) else GROUPINGS[1:2]:
            await _assert_same(store, start, end, resolution, **grouping)
        await _assert_values(store, data, start, end, resolution, math.inf, ("status_code",))


async def test_windows_shorter_than_an_hour_read_whole_minutes(store: TelemetryStore) -> None:
    data = await _fill(store, at("00:00:00"), at("03:00:00"), ("web-1",))
    await compact(store, at("03:30:00"), RETENTION)
    for start, end in [
        (at("01:13:25"), at("01:51:35")),
        (at("01:47:05"), at("02:31:15")),  # across an hour
        (at("01:00:00"), at("02:00:00")),  # one whole hour
        (at("02:10:00"), at("02:11:00")),  # one whole minute
        (at("02:10:05"), at("02:10:55")),  # no whole minute
    ]:
        for grouping in GROUPINGS:
            await _assert_same(store, start, end, 10, **grouping)
        await _assert_values(store, data, start, end, 10, math.inf, ("route",))


async def test_hours_not_rolled_up_yet_are_read_from_minutes_and_seconds(
    store: TelemetryStore,
) -> None:
    data = await _fill(store, at("00:00:00"), at("09:00:00"))
    # minutes done up to 08:19, hours up to 08:00
    await compact(store, at("08:20:10"), RETENTION)
    # the hour level lags behind: done up to 05:00 only, no hour bucket after it
    table = schema.metric_buckets
    async with store.engine.begin() as connection:
        await connection.execute(
            delete(table).where(table.c.resolution == 3600, table.c.start >= at("05:00:00"))
        )
        await connection.execute(
            update(schema.rollups)
            .where(schema.rollups.c.resolution == 3600)
            .values(done_until=at("05:00:00"))
        )
    for index, (start, end, resolution) in enumerate(
        [
            (at("00:13:20"), at("08:47:50"), 60),  # hours, minutes, then 10 s buckets
            (at("01:13:20"), at("07:47:50"), 60),
            (at("02:13:25"), at("08:12:35"), 10),
            (at("06:00:00"), at("09:00:00"), 10),  # no hour rolled up in it
        ]
    ):
        for grouping in GROUPINGS if index in (0, 2) else GROUPINGS[1:2]:
            await _assert_same(store, start, end, resolution, **grouping)
        done = at("08:19:00") if resolution == 60 else math.inf
        await _assert_values(store, data, start, end, resolution, done, ("status_code",))


async def test_a_store_upgraded_to_the_5_minute_level_reads_the_same_throughout(
    store: TelemetryStore,
) -> None:
    """A store whose hours were rolled up from minutes before the 5-minute level existed:
    reads are right before the level is built, while it is partly built (hours waiting
    for it) and after."""
    data = await _fill(store, at("00:00:00"), at("09:00:00"))
    await compact(store, at("06:30:00"), RETENTION)  # minutes up to 06:29, hours up to 06:00
    table, marks = schema.metric_buckets, schema.rollups
    async with store.engine.begin() as connection:  # as if made by the older code
        await connection.execute(delete(table).where(table.c.resolution == 300))
        await connection.execute(delete(marks).where(marks.c.resolution == 300))
    windows = [(at("00:13:20"), at("08:47:50"), 60), (at("02:13:25"), at("08:12:35"), 10)]

    async def check(done: float) -> None:
        for start, end, resolution in windows:
            for grouping in GROUPINGS[:3]:
                await _assert_same(store, start, end, resolution, **grouping)
            minutes_done = done if resolution == 60 else math.inf
            await _assert_values(store, data, start, end, resolution, minutes_done, ("route",))

    await check(at("06:29:00"))
    # the 5-minute level built up to 03:00 only: the hour level cannot move past it
    async with store.engine.begin() as connection:
        await connection.execute(delete(table).where(table.c.resolution == 3600))
        await connection.execute(delete(marks).where(marks.c.resolution == 3600))
    report = await compact(store, at("03:01:00"), RETENTION)
    assert report.rolled_up == {60: 0, 300: 2 * 4 * 36, 3600: 2 * 4 * 3}
    await check(at("06:29:00"))
    # then everything, the hours from the 5-minute buckets
    report = await compact(store, at("09:30:00"), RETENTION)
    assert report.rolled_up == {60: 2 * 4 * 151, 300: 2 * 4 * 72, 3600: 2 * 4 * 6}
    await check(math.inf)


async def test_windows_ending_now_include_the_partly_filled_last_hour(
    store: TelemetryStore,
) -> None:
    now = at("07:42:10")
    data = await _fill(store, at("00:00:00"), now)
    await compact(store, now, RETENTION)  # minutes done up to 07:41, hours up to 07:00
    for seconds in (DAY, 7 * HOUR, 6 * HOUR, HOUR, 15 * MINUTE):
        # a day reaches back before the data: 60 s buckets, the finest allowed
        resolution = 10 if seconds <= 6 * HOUR else 60
        for grouping in GROUPINGS if seconds in (DAY, HOUR) else GROUPINGS[1:2]:
            await _assert_same(store, now - seconds, now, resolution, **grouping)
        done = at("07:41:00") if resolution == 60 else math.inf
        await _assert_values(store, data, now - seconds, now, resolution, done, ("status_code",))
    # the last hour's newest buckets, after the last roll-up, count too
    [(_, bucket)] = await store.query.metric_window(NAME, now - HOUR, now)
    assert bucket.count == sum(len(values) for (_, s), values in data.items() if s >= now - HOUR)


async def test_finer_buckets_removed_by_retention_at_the_start(store: TelemetryStore) -> None:
    data = await _fill(store, at("00:00:00"), at("08:00:00"), ("web-1",))
    now = at("08:00:00") + 2 * DAY
    # 10 s buckets kept back to 04:30, 60 s buckets back to 02:00, 300 s ones back to
    # 01:00, hours all
    retention = RetentionSettings(
        buckets_10s_days=(now - at("04:30:00")) / DAY,
        buckets_1m_days=(now - at("02:00:00")) / DAY,
        buckets_5m_days=(now - at("01:00:00")) / DAY,
    )
    await compact(store, now, retention)
    # 10 s buckets gone at the start: the window is read at 60 s
    await _assert_same(store, at("04:10:20"), at("07:47:50"), 60, group_by=["status_code"])
    await _assert_values(
        store, data, at("04:10:20"), at("07:47:50"), 60, math.inf, ("status_code",)
    )
    # and 60 s ones too: at 300 s
    await _assert_same(store, at("01:10:20"), at("06:47:50"), 300, group_by=["status_code"])
    await _assert_values(
        store, data, at("01:10:20"), at("06:47:50"), 300, math.inf, ("status_code",)
    )
    # and 300 s ones too: at 3600 s
    await _assert_same(store, at("00:10:20"), at("06:47:50"), 3600, group_by=["status_code"])


async def test_minutes_removed_by_retention_are_not_read_for_a_10_s_window(
    store: TelemetryStore,
) -> None:
    """A retention keeping 10 s buckets longer than minute ones (odd, but allowed): the
    edges of a window read at 10 s must not be taken from deleted minutes."""
    data = await _fill(store, at("00:00:00"), at("08:00:00"), ("web-1",))
    now = at("08:00:00") + 2 * DAY
    retention = RetentionSettings(
        buckets_10s_days=3.0, buckets_1m_days=(now - at("02:00:00")) / DAY
    )
    await compact(store, now, retention)
    start, end = at("00:13:20"), at("05:47:50")
    await _assert_same(store, start, end, 10, group_by=["status_code"])
    await _assert_values(store, data, start, end, 10, math.inf, ("status_code",))


def _slots(parts: list[Segment], lowest: float, highest: float) -> list[float]:
    """The 10 s slots that ``parts`` read, each as often as it is read."""
    slots = []
    for slot in range(int(lowest), int(highest), 10):
        for level, lower, upper in parts:
            if lower <= math.floor(slot / level) * level < upper:
                slots.append(float(slot))
    return slots


@pytest.mark.parametrize("seed", range(30))
def test_whole_periods_read_every_slot_of_the_stitched_read_once(seed: int) -> None:
    rng = random.Random(seed)
    start = T0 + rng.randrange(0, 6 * 3600, rng.choice([1, 10, 60]))
    end = start + rng.randrange(1, 8 * 3600, rng.choice([1, 10, 60]))
    done = {60: T0 + 60 * rng.randrange(0, 600), 3600: T0 + 3600 * rng.randrange(0, 10)}
    done[3600] = min(done[3600], done[60] // 3600 * 3600)
    spans = {60: (T0 + 60 * rng.randrange(0, 120), done[60]), 3600: (T0, done[3600])}
    for resolution in (10, 60, 3600):
        parts = whole_periods(resolution, start, end, done, spans)
        expected = _slots(stitch(resolution, start, end, done), T0 - HOUR, T0 + 16 * HOUR)
        assert _slots(parts, T0 - HOUR, T0 + 16 * HOUR) == expected, (resolution, parts)
        assert all(lower < upper for _, lower, upper in parts)
        assert [p[1:] for p in parts] == sorted(p[1:] for p in parts)  # in time order
