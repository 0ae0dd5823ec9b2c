"""The prober: metrics, a bounded history of changes, the bus, and a loop that never dies."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from digitalme.monitoring.bus import EventBus
from digitalme.monitoring.health import (
    HEALTH_CHANGED_TOPIC,
    OVERALL,
    HealthChange,
    HealthResult,
    HealthStatus,
)
from digitalme.monitoring.health.prober import (
    AVAILABLE_METRIC,
    DURATION_METRIC,
    OVERALL_METRIC,
    STATUS_CHANGED_EVENT,
    HealthProber,
)
from digitalme.monitoring.health.registry import HealthRegistry
from digitalme.monitoring.health.runner import HealthRunner
from digitalme.monitoring.telemetry.buffer import ItemBuffer
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.items import EventItem
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.testing import FakeClock, ScriptedCheck
from polling import eventually

DEADLINE = 10.0  # seconds; a bound for waiting, never a timing assertion

Recorded = dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]


@pytest.fixture
def series() -> SeriesRegistry:
    return SeriesRegistry()


@pytest.fixture
def buffer() -> ItemBuffer:
    return ItemBuffer(1000)


@pytest.fixture
def telemetry(clock: FakeClock, buffer: ItemBuffer, series: SeriesRegistry) -> TelemetryClient:
    return TelemetryClient(clock=clock, buffer=buffer, registry=series, strict=True)


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def prober(
    runner: HealthRunner, clock: FakeClock, telemetry: TelemetryClient, bus: EventBus
) -> HealthProber:
    return HealthProber(
        runner, interval=0.05, clock=clock, telemetry=telemetry, bus=bus, history_size=5
    )


def recorded(series: SeriesRegistry) -> Recorded:
    return {(s.key.name, s.key.dimensions): list(s.pending) for s in series.all()}


async def test_a_round_records_overall_availability_and_duration(
    registry: HealthRegistry, prober: HealthProber, series: SeriesRegistry
) -> None:
    registry.add(ScriptedCheck("database"), timeout=5)
    registry.add(ScriptedCheck("redis", HealthResult.degraded("slow")), timeout=5)
    await prober.probe()
    values = recorded(series)
    assert values[(OVERALL_METRIC, ())] == [0.5]
    assert values[(AVAILABLE_METRIC, (("check", "database"),))] == [1.0]
    assert values[(AVAILABLE_METRIC, (("check", "redis"),))] == [0.5]
    assert len(values[(DURATION_METRIC, (("check", "database"),))]) == 1


async def test_a_reused_result_is_not_timed_twice(
    registry: HealthRegistry, prober: HealthProber, series: SeriesRegistry
) -> None:
    registry.add(ScriptedCheck("claude-api"), timeout=5, min_interval=60)
    await prober.probe()
    await prober.probe()
    values = recorded(series)
    assert values[(AVAILABLE_METRIC, (("check", "claude-api"),))] == [1.0, 1.0]
    assert len(values[(DURATION_METRIC, (("check", "claude-api"),))]) == 1


async def test_changes_are_remembered_published_and_tracked(
    registry: HealthRegistry,
    prober: HealthProber,
    bus: EventBus,
    buffer: ItemBuffer,
    clock: FakeClock,
) -> None:
    subscription = bus.subscribe(HEALTH_CHANGED_TOPIC)
    check = ScriptedCheck("database")
    registry.add(check, timeout=5)
    await prober.probe()
    await prober.probe()  # no change: nothing new
    check.error = ConnectionError("refused")
    clock.advance(10)
    with capture_logs() as logs:
        await prober.probe()

    changes = prober.history()
    assert [(c.subject, c.previous, c.current) for c in changes] == [
        ("database", None, HealthStatus.HEALTHY),
        (OVERALL, None, HealthStatus.HEALTHY),
        ("database", HealthStatus.HEALTHY, HealthStatus.UNHEALTHY),
        (OVERALL, HealthStatus.HEALTHY, HealthStatus.UNHEALTHY),
    ]
    assert prober.history("database")[-1].description == "check failed"
    assert prober.history(OVERALL)[-1].description == "not healthy: database"
    assert prober.status() is HealthStatus.UNHEALTHY
    published = [subscription.queue.get_nowait().payload for _ in range(4)]
    assert published == changes
    assert all(isinstance(change, HealthChange) for change in published)
    events = [i for i in buffer.drain() if isinstance(i, EventItem)]
    assert [e.name for e in events] == [STATUS_CHANGED_EVENT] * 4
    assert events[2].properties["Status"] == "Unhealthy"
    warning = next(log for log in logs if log["event"] == "health_status_changed")
    assert warning["log_level"] == "warning"
    assert warning["error"] == "ConnectionError: refused"


async def test_history_is_bounded(registry: HealthRegistry, prober: HealthProber) -> None:
    check = ScriptedCheck("flappy")
    registry.add(check, timeout=5)
    for round_number in range(10):
        check.result = (
            HealthResult.healthy() if round_number % 2 else HealthResult.unhealthy("down")
        )
        await prober.probe()
    assert len(prober.history()) == 5  # history_size


async def test_the_loop_probes_on_its_interval_survives_errors_and_stops(
    registry: HealthRegistry, runner: HealthRunner, prober: HealthProber, clock: FakeClock
) -> None:
    check = ScriptedCheck("counted")
    registry.add(check, timeout=5)
    original = runner.report
    failures = 0

    async def flaky_report(**kwargs: object) -> object:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise RuntimeError("runner broke")
        return await original(**kwargs)  # type: ignore[arg-type]

    runner.report = flaky_report  # type: ignore[method-assign]
    with capture_logs() as logs:
        prober.start()
        await eventually(lambda: prober.rounds >= 3, timeout=DEADLINE, what="three rounds")
        await prober.stop()
    assert not prober.running
    assert prober.errors == 2
    assert sum(log["event"] == "health_probe_failed" for log in logs) == 2
    rounds = prober.rounds
    await asyncio.sleep(0.15)
    assert prober.rounds == rounds  # stopped means stopped


async def test_stop_cancels_a_round_in_progress(
    registry: HealthRegistry, runner: HealthRunner, prober: HealthProber
) -> None:
    hanging = ScriptedCheck("hangs")
    hanging.hang()
    registry.add(hanging, timeout=60)
    prober.start()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(prober.stop(), timeout=DEADLINE)
    assert not prober.running
    await runner.aclose()  # the shared run outlives its waiter, as designed
