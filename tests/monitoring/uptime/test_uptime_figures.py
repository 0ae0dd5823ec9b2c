"""Exact uptime figures for known heartbeat sequences, recorded and read back from a real store."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from digitalme.monitoring.testing import FakeClock
from digitalme.monitoring.uptime.maintenance import MaintenanceCalendar, MaintenanceWindow
from digitalme.monitoring.uptime.model import BeatStatus, Heartbeat, Source
from digitalme.monitoring.uptime.recorder import HeartbeatRecorder
from digitalme.monitoring.uptime.store import UptimeStore
from digitalme.monitoring.uptime.windows import UptimeReader, WindowFigures, plan
from digitalme.settings import UptimeSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()  # the fake clock's start: midnight UTC
UP, DOWN, DEGRADED = BeatStatus.UP, BeatStatus.DOWN, BeatStatus.DEGRADED


def beats(
    start: float, stop: float, every: float, status: BeatStatus = UP, component: str = "database"
) -> list[Heartbeat]:
    """Heartbeats at start, start + every, ... up to and including stop."""
    count = round((stop - start) / every)
    return [
        Heartbeat(
            component=component,
            source=Source.INSIDE,
            at=start + i * every,
            status=status,
            interval=every,
            duration_ms=5.0,
            failing=() if status is not DOWN else (component,),
        )
        for i in range(count + 1)
    ]


def reader(
    store: UptimeStore, clock: FakeClock, calendar: MaintenanceCalendar, **kw: str
) -> UptimeReader:
    return UptimeReader(store, calendar, UptimeSettings.model_validate(kw), clock)


async def last_hour(
    store: UptimeStore, clock: FakeClock, calendar: MaintenanceCalendar | None = None, **kw: str
) -> WindowFigures:
    clock.advance(T0 + 3600 - clock.time())
    found = await reader(store, clock, calendar or MaintenanceCalendar(), **kw).figures(
        Source.INSIDE, 3600
    )
    return found["database"]


async def record(
    store: UptimeStore, *batches: list[Heartbeat], calendar: MaintenanceCalendar | None = None
) -> HeartbeatRecorder:
    recorder = HeartbeatRecorder(store, Source.INSIDE, calendar or MaintenanceCalendar())
    for batch in batches:
        assert await recorder.record(batch)
    return recorder


async def test_an_hour_of_healthy_heartbeats_is_100_percent(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    await record(uptime_store, beats(T0, T0 + 3600, 10))
    figures = await last_hour(uptime_store, clock)
    assert figures.totals.up == pytest.approx(3600.0)
    assert figures.uptime == 1.0
    assert figures.totals.beats == 360  # the 361st, at T0 + 3600, is in the next minute
    assert figures.to_dict()["response_ms"]["avg"] == pytest.approx(5.0)


async def test_five_minutes_down_cost_exactly_300_seconds_and_open_one_incident(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    recorder = await record(
        uptime_store,
        beats(T0, T0 + 1200, 10),
        beats(T0 + 1210, T0 + 1500, 10, DOWN),
        beats(T0 + 1510, T0 + 3600, 10),
    )
    figures = await last_hour(uptime_store, clock)
    assert figures.totals.down == pytest.approx(300.0)
    assert figures.uptime == pytest.approx(3300 / 3600)
    incidents = await uptime_store.incidents(T0, T0 + 3600)
    assert [(i.started_at - T0, i.ended_at and i.ended_at - T0, i.failing) for i in incidents] == [
        (1200.0, 1500.0, ["database"])
    ]
    assert recorder.states["database"].incident is None


async def test_degraded_counts_as_up_and_is_shown_apart(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    await record(uptime_store, beats(T0, T0 + 1800, 10), beats(T0 + 1810, T0 + 3600, 10, DEGRADED))
    figures = await last_hour(uptime_store, clock)
    assert figures.uptime == 1.0
    assert figures.totals.degraded == pytest.approx(1800.0)


async def test_a_gap_longer_than_three_intervals_is_unknown(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    await record(uptime_store, beats(T0, T0 + 600, 10), beats(T0 + 1200, T0 + 3600, 10))
    figures = await last_hour(uptime_store, clock)
    # the heartbeat after the gap vouches for its own interval only
    assert figures.totals.unknown == pytest.approx(590.0)
    assert figures.uptime == pytest.approx(3010 / 3600)
    excluded = await last_hour(uptime_store, clock, unknown="excluded")
    assert excluded.uptime == 1.0
    incidents = await uptime_store.incidents(T0, T0 + 3600)
    assert [(i.cause, i.started_at - T0, i.ended_at and i.ended_at - T0) for i in incidents] == [
        ("unknown", 600.0, 1190.0)
    ]


async def test_a_short_gap_is_covered_by_the_next_heartbeat(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    # 30 s without a heartbeat at a 10 s interval: within three intervals
    await record(uptime_store, beats(T0, T0 + 600, 10), beats(T0 + 630, T0 + 3600, 10))
    figures = await last_hour(uptime_store, clock)
    assert figures.totals.unknown == 0.0
    assert figures.uptime == 1.0


async def test_uptime_is_time_weighted_when_the_interval_changes(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    # 10 s probes for 40 minutes, then 60 s probes; one failed 60 s probe costs 60 s,
    # not a 1/230th of the probes
    await record(
        uptime_store,
        beats(T0, T0 + 2400, 10),
        beats(T0 + 2460, T0 + 2880, 60),
        beats(T0 + 2940, T0 + 2940, 60, DOWN),
        beats(T0 + 3000, T0 + 3600, 60),
    )
    figures = await last_hour(uptime_store, clock)
    assert figures.totals.down == pytest.approx(60.0)
    assert figures.uptime == pytest.approx(3540 / 3600)
    assert figures.totals.unknown == 0.0


async def test_an_open_gap_counts_as_unknown_until_now(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    await record(uptime_store, beats(T0, T0 + 600, 10))
    figures = await last_hour(uptime_store, clock)
    assert figures.totals.unknown == pytest.approx(3000.0)
    assert figures.uptime == pytest.approx(600 / 3600)
    # within three intervals of the last heartbeat, the time since it is not counted yet
    clock.advance(T0 + 620 - clock.time())
    found = await reader(uptime_store, clock, MaintenanceCalendar()).figures(Source.INSIDE, 3600)
    assert found["database"].totals.unknown == 0.0
    assert found["database"].uptime == 1.0


async def test_maintenance_time_counts_neither_way(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    calendar = MaintenanceCalendar(
        [
            MaintenanceWindow(
                title="database upgrade",
                components=["database"],
                starts_at=datetime.fromtimestamp(T0 + 1200, UTC),
                ends_at=datetime.fromtimestamp(T0 + 1500, UTC),
            )
        ]
    )
    await record(
        uptime_store,
        beats(T0, T0 + 1200, 10),
        beats(T0 + 1210, T0 + 1500, 10, DOWN),
        beats(T0 + 1510, T0 + 3600, 10),
        calendar=calendar,
    )
    figures = await last_hour(uptime_store, clock, calendar)
    assert figures.totals.maintenance == pytest.approx(300.0)
    assert figures.totals.down == 0.0
    assert figures.uptime == 1.0
    assert await uptime_store.incidents(T0, T0 + 3600) == []


async def test_a_restarted_recorder_continues_from_the_stored_state(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    await record(uptime_store, beats(T0, T0 + 1200, 10), beats(T0 + 1210, T0 + 1300, 10, DOWN))
    # a new process: the open incident and the last heartbeat come from the store
    again = HeartbeatRecorder(uptime_store, Source.INSIDE, MaintenanceCalendar())
    await again.load()
    assert again.states["database"].incident is not None
    assert await again.record(beats(T0 + 1310, T0 + 3600, 10))
    figures = await last_hour(uptime_store, clock)
    assert figures.totals.down == pytest.approx(100.0)
    assert figures.totals.up == pytest.approx(3500.0)
    [incident] = await uptime_store.incidents(T0, T0 + 3600)
    assert (incident.started_at - T0, incident.ended_at) == (1200.0, T0 + 1300)


async def test_long_windows_add_up_across_day_hour_and_minute_buckets(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    # three days at a 60 s interval with a 17-minute outage every 5 hours
    sequence: list[Heartbeat] = []
    moment = T0
    while moment <= T0 + 3 * 86400:
        down = (moment - T0) % 18000 < 1020 and moment > T0
        sequence.extend(beats(moment, moment, 60, DOWN if down else UP))
        moment += 60
    await record(uptime_store, sequence)
    clock.advance(T0 + 3 * 86400 + 7 * 60 + 20 - clock.time())  # mid-minute
    figures = await reader(uptime_store, clock, MaintenanceCalendar()).figures(
        Source.INSIDE, 2 * 86400 + 5 * 3600
    )
    got = figures["database"]
    # brute force over the heartbeats: each covers the 60 s before it
    start = got.start
    down = sum(60 for b in sequence if b.status is DOWN and b.at - 60 >= start)
    up = sum(60 for b in sequence if b.status is UP and b.at - 60 >= start and b.at > T0)
    assert got.totals.down == pytest.approx(down)
    assert got.totals.up == pytest.approx(up)


def test_a_plan_covers_the_window_once_with_whole_buckets() -> None:
    rng = random.Random(7)
    for _ in range(500):
        end = T0 + rng.uniform(0, 400 * 86400)
        start = end - rng.uniform(60, 366 * 86400)
        first, segments = plan(
            start, end, oldest_minute=end - 14 * 86400, oldest_hour=end - 400 * 86400
        )
        assert start <= first < start + 86400
        cursor = first
        for level, a, b in segments:
            assert a == cursor
            assert a % level == 0
            assert b % level == 0
            assert b > a
            cursor = b
        assert cursor == -(-end // 60) * 60
        if start >= end - 14 * 86400:
            assert first - start < 60


async def test_two_processes_recording_one_source_do_not_count_time_twice(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    # two uvicorn workers, each probing every 10 s, five seconds apart
    first = HeartbeatRecorder(uptime_store, Source.INSIDE, MaintenanceCalendar())
    second = HeartbeatRecorder(uptime_store, Source.INSIDE, MaintenanceCalendar())
    for beat in beats(T0, T0 + 3600, 5):
        recorder = first if round((beat.at - T0) / 5) % 2 == 0 else second
        assert await recorder.record([beat])
    figures = await last_hour(uptime_store, clock)
    assert figures.totals.up == pytest.approx(3600.0)
    assert figures.totals.unknown == 0.0


async def test_several_windows_read_at_once_equal_each_read_alone(
    uptime_store: UptimeStore, clock: FakeClock
) -> None:
    # two components over three days, outages at different times, read mid-minute
    sequence: list[Heartbeat] = []
    moment = T0
    while moment <= T0 + 3 * 86400:
        for component, every in (("database", 18000), ("redis", 7000)):
            down = (moment - T0) % every < 600 and moment > T0
            sequence.extend(beats(moment, moment, 60, DOWN if down else UP, component))
        moment += 60
    await record(uptime_store, sequence)
    clock.advance(T0 + 3 * 86400 + 7 * 60 + 20 - clock.time())
    read = reader(uptime_store, clock, MaintenanceCalendar())
    windows = {"1h": 3600.0, "24h": 86400.0, "2d5h": 2 * 86400 + 5 * 3600.0, "7d": 7 * 86400.0}

    together = await read.windows(Source.INSIDE, windows)

    for name, seconds in windows.items():
        alone = await read.figures(Source.INSIDE, seconds)
        assert set(together[name]) == set(alone) == {"database", "redis"}
        for component, figures in alone.items():
            assert together[name][component] == figures
    assert together["24h"]["redis"].totals.down > together["24h"]["database"].totals.down > 0
    standard = await read.standard(Source.INSIDE)
    assert standard["redis"]["24h"] == together["24h"]["redis"]
    # the day bars of both components in one query are each one's own
    days = [(86400, T0, T0 + 4 * 86400)]
    both = await uptime_store.buckets_of(Source.INSIDE, ["database", "redis"], days)
    for component in ("database", "redis"):
        assert both[component] == await uptime_store.buckets(Source.INSIDE, component, days)
        assert [start for _, start, _, _ in both[component]] == [T0 + i * 86400 for i in range(4)]
