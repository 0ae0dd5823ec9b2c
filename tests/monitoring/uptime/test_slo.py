"""The SLO: error-budget arithmetic and each burn-rate tier firing through the alert engine
at the right time, for a total outage and for a partial one (fake clock, real store)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digitalme.monitoring.alerts.model import AlertState
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.testing import FakeClock
from digitalme.monitoring.uptime.maintenance import MaintenanceWindow
from digitalme.monitoring.uptime.model import OVERALL, BeatStatus, Heartbeat, Source
from digitalme.monitoring.uptime.slo import burn_rate
from digitalme.monitoring.uptime.store import Totals
from digitalme.monitoring.uptime.windows import WindowFigures
from digitalme.settings import Settings, load_settings

INTERVAL = 10.0
HISTORY = 3 * 86400  # three healthy days before the outage: every tier's long window is full


def beat(at: float, status: BeatStatus) -> Heartbeat:
    return Heartbeat(OVERALL, Source.INSIDE, at, status, INTERVAL, duration_ms=3.0)


@pytest.fixture
def settings() -> Settings:
    return load_settings(health={"prober_enabled": False})


@pytest.fixture
async def monitoring(settings: Settings, store: TelemetryStore, clock: FakeClock) -> Monitoring:
    monitoring = Monitoring(settings, clock=clock, store=store, strict=True)
    assert monitoring.uptime is not None
    start = clock.time()
    history = [beat(start + i * INTERVAL, BeatStatus.UP) for i in range(HISTORY // 10 + 1)]
    assert await monitoring.uptime.recorder.record(history)
    clock.advance(HISTORY)
    return monitoring


async def run(
    monitoring: Monitoring, clock: FakeClock, seconds: float, status_of: object
) -> dict[str, float]:
    """Probe every 10 s for ``seconds`` with ``status_of(step)``; when each tier first fired."""
    assert monitoring.uptime is not None
    assert monitoring.alerts is not None
    fired: dict[str, float] = {}
    begin = clock.time()
    step = 0
    while clock.time() - begin < seconds:
        step += 1
        clock.advance(INTERVAL)
        status = status_of(step)  # type: ignore[operator]
        assert await monitoring.uptime.recorder.record([beat(clock.time(), status)])
        await monitoring.uptime.slo.evaluate()
        assert monitoring.lease is not None
        assert await monitoring.lease.acquire()  # the leadership loop's renewal, in fake time
        await monitoring.alerts.evaluate()
        for alert in monitoring.alerts.active_alerts():
            if alert.state is AlertState.FIRING and alert.rule_id not in fired:
                fired[alert.rule_id] = clock.time() - begin
    return fired


def test_error_budget_arithmetic() -> None:
    # 99.5 % of 30 days: 216 minutes of budget; 54 minutes down in a full window use a quarter
    figures = WindowFigures(0.0, 30 * 86400.0, Totals(up=30 * 86400 - 3240, down=3240), True)
    assert figures.uptime == pytest.approx(1 - 3240 / (30 * 86400))
    assert burn_rate(figures, 0.995) == pytest.approx(0.25)
    unknown = WindowFigures(0.0, 3600.0, Totals(up=3000, unknown=600), True)
    assert burn_rate(unknown, 0.995) == pytest.approx((600 / 3600) / 0.005)
    excluded = WindowFigures(0.0, 3600.0, Totals(up=3000, unknown=600), False)
    assert burn_rate(excluded, 0.995) == 0.0
    assert burn_rate(WindowFigures(0.0, 1.0, Totals(), True), 0.995) == 0.0


async def test_the_report_counts_budget_in_minutes(
    monitoring: Monitoring, clock: FakeClock
) -> None:
    assert monitoring.uptime is not None
    await run(monitoring, clock, 600, lambda step: BeatStatus.DOWN if step <= 6 else BeatStatus.UP)
    report = (await monitoring.uptime.slo.report()).to_dict()
    budget = report["error_budget"]
    assert budget["total_minutes"] == pytest.approx(216.0)
    assert budget["consumed_minutes"] == pytest.approx(1.0)
    assert budget["remaining_minutes"] == pytest.approx(215.0)
    # three days of history and ten minutes of this test observed in the 30-day window
    assert report["sli_percent"] == pytest.approx(100 * (1 - 60 / (HISTORY + 600)), abs=1e-4)


async def test_a_total_outage_pages_within_five_minutes_then_every_tier_in_turn(
    monitoring: Monitoring, clock: FakeClock
) -> None:
    fired = await run(monitoring, clock, 1400, lambda step: BeatStatus.DOWN)
    # page at 14.4x: 0.072 h of a 1 h window = 259 s; 6x over 6 h: 648 s; 3x over 1 d and
    # 1x over 3 d: 1296 s (the windows start on a minute: up to a minute shorter)
    assert 240 <= fired["slo_burn_page_fast"] <= 270
    assert 620 <= fired["slo_burn_page_slow"] <= 660
    assert 1240 <= fired["slo_burn_ticket_fast"] <= 1310
    assert 1240 <= fired["slo_burn_ticket_slow"] <= 1310
    assert monitoring.alerts is not None
    pages = [a for a in monitoring.alerts.active_alerts() if a.rule_id == "slo_burn_page_fast"]
    assert str(pages[0].severity) == "Critical"
    assert str(pages[0].category) == "Availability"


async def test_a_partial_outage_pages_later_and_recovery_resolves_the_page(
    monitoring: Monitoring, clock: FakeClock
) -> None:
    # every other probe fails: a burn rate of 100, so the 1 h window needs 518 s
    fired = await run(
        monitoring, clock, 700, lambda step: BeatStatus.DOWN if step % 2 else BeatStatus.UP
    )
    assert 490 <= fired["slo_burn_page_fast"] <= 540
    assert "slo_burn_page_slow" not in fired  # needs 1296 s at this rate
    # healthy again: the 5-minute window clears within about five minutes
    await run(monitoring, clock, 330, lambda step: BeatStatus.UP)
    assert monitoring.alerts is not None
    assert not [a for a in monitoring.alerts.active_alerts() if a.rule_id == "slo_burn_page_fast"]


async def test_a_short_blip_does_not_page(monitoring: Monitoring, clock: FakeClock) -> None:
    fired = await run(
        monitoring, clock, 900, lambda step: BeatStatus.DOWN if step <= 12 else BeatStatus.UP
    )
    assert fired == {}


async def test_maintenance_is_left_out_of_the_slo(monitoring: Monitoring, clock: FakeClock) -> None:
    assert monitoring.uptime is not None
    now = clock.time()
    await monitoring.uptime.save_maintenance(
        MaintenanceWindow(
            title="upgrade",
            starts_at=datetime.fromtimestamp(now, UTC),
            ends_at=datetime.fromtimestamp(now + 1500, UTC),
        )
    )
    fired = await run(monitoring, clock, 1400, lambda step: BeatStatus.DOWN)
    assert fired == {}
    report = (await monitoring.uptime.slo.report()).to_dict()
    assert report["error_budget"]["consumed_minutes"] == 0.0
    assert report["window"]["maintenance_seconds"] == pytest.approx(1400.0)
