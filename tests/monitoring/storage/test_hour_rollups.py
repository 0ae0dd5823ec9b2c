"""Hour roll-ups of migration 0006: the busiest minute of each hour and security events per
hour give exactly what reading every minute or every event gives, whatever the roll-up
state (done, lagging, made before the migration, cut by retention)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from digitalme.monitoring.storage import Aggregation, QueryError, TelemetryStore, compact, schema
from digitalme.monitoring.telemetry.items import ItemKind, SecurityEventItem, Severity
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket
from digitalme.settings import RetentionSettings

T0 = 1_767_225_600.0  # a multiple of 86400: "00:00:00" below is T0
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
NAME = "http.server.duration"
KEYS = [
    SeriesKey(NAME, (("route", route), ("status_code", status)))
    for route in ("GET /a", "POST /b")
    for status in ("200", "500")
]
OTHER = SeriesKey("dependency.duration", (("type", "SQL"),))
RETENTION = RetentionSettings()
TYPES = ("RateLimit", "LoginFailed", "AuthenticationRequired", "SqlInjection")
SECURITY = ItemKind.SECURITY_EVENT


def at(clock: str) -> float:
    """``"07:13:20"`` as epoch seconds after T0."""
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return T0 + hours * HOUR + minutes * MINUTE + seconds


async def _fill_buckets(store: TelemetryStore, start: float, end: float) -> None:
    """10 s buckets of every series on two instances, with bursts and quiet minutes."""
    rng = random.Random(7)
    for instance in ("web-1", "web-2"):
        buckets: list[tuple[SeriesKey, Bucket]] = []
        for index in range(int((end - start) // 10)):
            bucket_start = start + 10 * index
            burst = 40 if rng.random() < 0.01 else 1
            for key in [*KEYS, OTHER]:
                if rng.random() < 0.3:
                    continue
                bucket = Bucket(bucket_start, 10)
                bucket.add_many([rng.uniform(1, 500) for _ in range(rng.randint(1, 3) * burst)])
                buckets.append((key, bucket))
        await store.write(TelemetryBatch(instance=instance, buckets=buckets))


async def _minute_read(store: TelemetryStore, start: float, end: float) -> tuple[float, float]:
    """Busiest and last minute as the per-minute series gives them (the reference)."""
    points = await store.query.metric_points(
        NAME, Aggregation.COUNT, MINUTE, start, end, max_points=10_000
    )
    counts = [value or 0.0 for _, value in points]
    return max(counts), counts[-1]


WINDOWS = [
    ("00:00:00", "09:00:00"),
    ("00:13:00", "08:47:00"),
    ("00:59:00", "07:01:00"),
    ("02:00:00", "03:00:00"),  # one whole hour
    ("03:00:00", "05:00:00"),  # its last minute in a whole hour
    ("04:10:00", "04:11:00"),  # one minute
]


async def _assert_peaks(store: TelemetryStore) -> None:
    for first, last in WINDOWS:
        start, end = at(first), at(last)
        found = await store.query.busiest_minute(NAME, start, end)
        assert found == await _minute_read(store, start, end), (first, last)


# from 00:20 the minutes are rolled up an hour at a time from 00:20 (into 5-minute
# buckets), so each hour's busiest minute is found in two parts and must keep the larger
@pytest.mark.parametrize("first", ["00:00:00", "00:20:00"])
async def test_hour_peaks_equal_the_busiest_minute_read_minute_by_minute(
    store: TelemetryStore, first: str
) -> None:
    await _fill_buckets(store, at(first), at("09:00:00"))
    await compact(store, at("09:30:00"), RETENTION)  # everything rolled up

    # one row per hour and name: the largest sum over series and instances of a minute
    table = schema.minute_peaks
    async with store.engine.connect() as connection:
        stored = {
            hour: count
            for hour, count in await connection.execute(
                select(table.c.hour, table.c.count).where(table.c.name == NAME)
            )
        }
    minutes = await _stored_minutes(store)
    assert sorted(stored) == [at(f"0{hour}:00:00") for hour in range(9)]
    for hour, count in stored.items():
        assert count == max(c for m, c in minutes.items() if hour <= m < hour + HOUR)
    assert max(stored.values()) > min(stored.values())  # the bursts: not a flat figure

    if first == "00:00:00":  # (the reference reads hours for a window from before the data)
        await _assert_peaks(store)


async def test_hours_without_a_peak_and_lagging_roll_ups_read_their_minutes(
    store: TelemetryStore,
) -> None:
    await _fill_buckets(store, at("00:00:00"), at("09:00:00"))
    await compact(store, at("08:20:10"), RETENTION)  # minutes up to 08:19, hours up to 08:00
    await _assert_peaks(store)
    # hours rolled up before migration 0006 have no peak: their minutes are read
    table = schema.minute_peaks
    async with store.engine.begin() as connection:
        await connection.execute(
            delete(table).where(table.c.hour.in_([at("01:00:00"), at("02:00:00"), at("05:00:00")]))
        )
    await _assert_peaks(store)
    # and the next roll-up records the hours it adds, not the ones done before
    await compact(store, at("09:30:00"), RETENTION)
    await _assert_peaks(store)
    async with store.engine.connect() as connection:
        hours = (await connection.execute(select(func.count()).select_from(table))).scalar()
    assert hours == 2 * (9 - 3)  # two names, each without the three hours deleted


async def _stored_minutes(store: TelemetryStore) -> dict[float, int]:
    """Every minute's count of ``NAME`` from the minute buckets, series and instances added."""
    buckets, series = schema.metric_buckets, schema.metric_series
    per_minute = (
        select(buckets.c.start, func.sum(buckets.c.count))
        .join(series, series.c.id == buckets.c.series_id)
        .where(series.c.name == NAME, buckets.c.resolution == 60)
        .group_by(buckets.c.start)
    )
    async with store.engine.connect() as connection:
        return {start: int(count) for start, count in await connection.execute(per_minute)}


async def test_a_window_from_before_the_first_minute_counts_minutes_not_hours(
    store: TelemetryStore,
) -> None:
    # a young store: its first hour bucket starts before its first minute bucket
    await _fill_buckets(store, at("00:30:00"), at("03:00:00"))
    await compact(store, at("03:30:00"), RETENTION)
    minutes = await _stored_minutes(store)

    found = await store.query.busiest_minute(NAME, at("00:00:00"), at("03:00:00"))

    # (the per-minute series reads this window at the hour level, one hour's count in
    # one step: the figure was an hour's requests before the hour roll-ups had peaks)
    assert found == (float(max(minutes.values())), float(minutes[at("02:59:00")]))


async def test_busiest_minute_without_data_or_series(store: TelemetryStore) -> None:
    assert await store.query.busiest_minute(NAME, at("01:00:00"), at("02:00:00")) is None
    await _fill_buckets(store, at("00:00:00"), at("01:00:00"))
    await compact(store, at("09:30:00"), RETENTION)
    assert await store.query.busiest_minute(NAME, at("03:00:00"), at("06:00:00")) == (0.0, 0.0)
    with pytest.raises(QueryError) as caught:
        await store.query.busiest_minute(NAME, at("00:00:30"), at("00:10:00"))
    assert caught.value.field == "start"


async def test_peaks_go_with_the_hour_buckets(store: TelemetryStore) -> None:
    await _fill_buckets(store, at("00:00:00"), at("03:00:00"))
    now = at("03:00:00") + 2 * DAY
    await compact(store, now, RETENTION)
    retention = RetentionSettings(buckets_1h_days=(now - at("02:00:00")) / DAY)
    report = await compact(store, now, retention)
    table = schema.minute_peaks
    async with store.engine.connect() as connection:
        hours = set((await connection.execute(select(table.c.hour))).scalars())
    assert hours == {at("02:00:00")}
    assert report.deleted_rollups == 2 * 2


# -- security events per hour ----------------------------------------------------


async def _fill_events(store: TelemetryStore, start: float, end: float) -> None:
    """About one event every 4 s from a few busy addresses, many quiet ones and none."""
    rng = random.Random(3)
    items = []
    moment = start
    while moment < end:
        moment += rng.expovariate(1 / 4)
        roll = rng.random()
        ip = (
            None
            if roll < 0.05
            else f"203.0.113.{rng.randint(1, 3)}"
            if roll < 0.4
            else f"198.51.{rng.randint(0, 9)}.{rng.randint(0, 255)}"
        )
        kind = rng.choice(TYPES)
        items.append(
            SecurityEventItem(
                time=moment, event_type=kind, severity=Severity.MEDIUM, details="", client_ip=ip
            )
        )
    items = [item for item in items if item.time < end]
    await store.write(TelemetryBatch(items=items))


async def _figures(store: TelemetryStore, start: float, end: float) -> list[Any]:
    query = store.query
    top = await query.count_by(SECURITY, ["client_ip"], start, end, limit=11)
    ips = [ip for (ip,), _ in top if ip is not None]
    return [
        await query.count_by(SECURITY, ["event_type"], start, end),
        await query.count_distinct(
            SECURITY, "client_ip", start, end, where={"event_type": "RateLimit"}
        ),
        await query.count_distinct(SECURITY, "client_ip", start, end),
        top,
        await query.count_by(
            SECURITY, ["client_ip", "event_type"], start, end, where={"client_ip": ips}
        ),
        await query.count_by(SECURITY, ["event_type"], start, end, where={"client_ip": None}),
        await query.count_items(SECURITY, start, end),
    ]


async def _without_hours(store: TelemetryStore, start: float, end: float) -> list[Any]:
    """The figures read from the events alone (the roll-up's mark removed, then put back)."""
    marks = schema.item_rollups
    async with store.engine.begin() as connection:
        saved = (await connection.execute(select(marks))).all()
        await connection.execute(delete(marks))
    try:
        return await _figures(store, start, end)
    finally:
        async with store.engine.begin() as connection:
            if saved:
                await connection.execute(marks.insert(), [dict(row._mapping) for row in saved])


SECURITY_WINDOWS = [
    ("00:00:00", "09:00:00"),
    ("00:13:20", "08:47:50"),
    ("01:59:59", "07:00:01"),
    ("03:00:00", "04:00:00"),  # one whole hour
    ("03:10:00", "03:50:00"),  # none
]


async def _assert_security(store: TelemetryStore) -> None:
    for first, last in SECURITY_WINDOWS:
        start, end = at(first), at(last)
        assert await _figures(store, start, end) == await _without_hours(store, start, end)


async def test_security_hours_count_exactly_what_the_events_count(store: TelemetryStore) -> None:
    await _fill_events(store, at("00:20:00"), at("09:00:00"))
    report = await compact(store, at("09:30:00"), RETENTION)
    assert report.security_hours == 9  # from the first event's hour on

    hours, marks = schema.security_hours, schema.item_rollups
    async with store.engine.connect() as connection:
        done = (await connection.execute(select(marks.c.done_until))).scalar()
        rows = (await connection.execute(select(func.count()).select_from(hours))).scalar()
        events = (
            await connection.execute(select(func.count()).select_from(schema.security_events))
        ).scalar()
    assert done == at("09:00:00")
    assert rows is not None
    assert events is not None
    assert 0 < rows < events  # fewer rows than events: addresses repeat within an hour
    await _assert_security(store)

    # idempotent: nothing more to do, and the same rows after a rebuild
    assert (await compact(store, at("09:30:00"), RETENTION)).security_hours == 0
    await _assert_security(store)


async def test_security_hours_lagging_or_with_gaps(store: TelemetryStore) -> None:
    await _fill_events(store, at("00:00:00"), at("02:00:00"))
    await _fill_events(store, at("05:00:00"), at("09:00:00"))  # three quiet hours
    report = await compact(store, at("06:30:30"), RETENTION)  # hours done up to 06:00
    assert report.security_hours == 2 + 1
    await _assert_security(store)
    report = await compact(store, at("09:30:00"), RETENTION)
    assert report.security_hours == 3
    await _assert_security(store)


async def test_security_hours_go_with_their_events(store: TelemetryStore) -> None:
    await _fill_events(store, at("00:00:00"), at("03:00:00"))
    await compact(store, at("03:30:00"), RETENTION)
    now = at("03:30:00") + 7 * DAY
    retention = RetentionSettings(raw_items_days=(now - at("01:30:00")) / DAY)
    report = await compact(store, now, retention)
    hours = schema.security_hours
    async with store.engine.connect() as connection:
        left = set((await connection.execute(select(hours.c.hour).distinct())).scalars())
    assert left == {at("01:00:00"), at("02:00:00")}  # 01:00 still has events after 01:30
    assert report.deleted_rollups > 0


async def test_instances_rolling_up_together_count_each_hour_once(
    store: TelemetryStore, store_url: str
) -> None:
    await _fill_events(store, at("00:00:00"), at("06:00:00"))
    other = await TelemetryStore.open(store_url)
    try:
        reports = await asyncio.gather(
            compact(store, at("06:30:00"), RETENTION), compact(other, at("06:30:00"), RETENTION)
        )
    finally:
        await other.close()
    assert sum(report.security_hours for report in reports) == 6
    await _assert_security(store)
