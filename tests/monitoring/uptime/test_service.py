"""The uptime monitor inside Monitoring: each prober round becomes heartbeats, retention
deletes what is older than kept, and figures survive a restart of the whole stack."""

from __future__ import annotations

import pytest

from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.health.model import HealthResult
from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.testing import FakeClock, ScriptedCheck
from digitalme.monitoring.uptime.model import OVERALL, BeatStatus, Source
from digitalme.settings import load_settings


def monitoring_on(store: TelemetryStore, clock: FakeClock) -> Monitoring:
    settings = load_settings(
        health={
            "prober_enabled": False,
            "redis_check": False,
            "telemetry_store_check": False,
            "process": {"enabled": False},
            "claude": {"enabled": False},
        },
        cluster={"backplane": False},  # no hub-backplane check among the scripted ones
    )
    monitoring = Monitoring(settings, clock=clock, store=store, strict=True)
    return monitoring


async def test_each_probe_round_records_a_heartbeat_per_check_and_overall(
    store: TelemetryStore, clock: FakeClock
) -> None:
    monitoring = monitoring_on(store, clock)
    database = ScriptedCheck("database", HealthResult.healthy())
    monitoring.health.add(database)
    monitoring.health.add(ScriptedCheck("search", HealthResult.degraded("slow")))
    assert monitoring.uptime is not None
    for _ in range(7):
        await monitoring.health.prober.probe()
        clock.advance(10)
    database.result = HealthResult.unhealthy("connection refused")
    await monitoring.health.prober.probe()
    states = await monitoring.uptime.store.load_states(Source.INSIDE)
    assert {name: str(s.last_status) for name, s in states.items()} == {
        "database": "down",
        "search": "degraded",
        OVERALL: "down",
    }
    figures = await monitoring.uptime.reader.figures(Source.INSIDE, 3600)
    assert figures["database"].totals.up == pytest.approx(60.0)
    assert figures["database"].totals.down == pytest.approx(10.0)
    assert figures["search"].totals.degraded == pytest.approx(70.0)
    [incident] = await monitoring.uptime.store.incidents(0, clock.time() + 1, component=OVERALL)
    assert incident.failing == ["database", "search"]
    assert incident.open


async def test_retention_deletes_old_heartbeats_and_buckets(
    store: TelemetryStore, clock: FakeClock
) -> None:
    monitoring = monitoring_on(store, clock)
    monitoring.health.add(ScriptedCheck("database", HealthResult.healthy()))
    assert monitoring.uptime is not None
    for _ in range(3):
        await monitoring.health.prober.probe()
        clock.advance(10)
    clock.advance(31 * 86400)  # past the 30 days heartbeats and the 14 days minutes are kept
    deleted = await monitoring.uptime.apply_retention()
    assert deleted == 3 * 2 + 2  # heartbeats (database, overall) and minute buckets
    hour = await monitoring.uptime.reader.figures(Source.INSIDE, 400 * 86400)
    assert hour["database"].totals.up == pytest.approx(20.0)  # the hour and day buckets stay
    assert (
        await monitoring.uptime.store.heartbeats(Source.INSIDE, "database", 0, clock.time(), 10)
        == []
    )


async def test_figures_survive_a_restart(
    store: TelemetryStore, store_url: str, clock: FakeClock
) -> None:
    monitoring = monitoring_on(store, clock)
    monitoring.health.add(ScriptedCheck("database", HealthResult.healthy()))
    for _ in range(4):
        await monitoring.health.prober.probe()
        clock.advance(10)
    await store.close()
    reopened = await TelemetryStore.open(store_url, clock=clock)
    try:
        again = monitoring_on(reopened, clock)
        again.health.add(ScriptedCheck("database", HealthResult.healthy()))
        assert again.uptime is not None
        await again.health.prober.probe()  # 10 s after the last one: continues
        figures = await again.uptime.reader.figures(Source.INSIDE, 3600)
        assert figures["database"].totals.up == pytest.approx(40.0)
        assert figures["database"].totals.beats == 5
        assert str(figures["database"].totals.unknown) == "0.0"
        assert (
            BeatStatus.UP
            is (await again.uptime.store.load_states(Source.INSIDE))["database"].last_status
        )
    finally:
        await reopened.close()
