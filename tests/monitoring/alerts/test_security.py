"""Security events: immediate alerts, grouped by type and source, counted, not repeated."""

from __future__ import annotations

import pytest

from digitalme.monitoring.alerts import (
    SECURITY_RULE_ID,
    AlertEventKind,
    AlertState,
    InMemoryAlertStore,
)
from digitalme.monitoring.bus import EventBus
from digitalme.monitoring.telemetry.buffer import ItemBuffer
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import AlertingSettings
from monitoring.alerts.helpers import EngineFactory, kinds
from polling import eventually

DEADLINE = 10.0  # seconds; a bound for waiting, never a timing assertion


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def client(bus: EventBus, clock: FakeClock) -> TelemetryClient:
    return TelemetryClient(
        clock=clock, buffer=ItemBuffer(100_000), registry=SeriesRegistry(), bus=bus, strict=True
    )


async def test_a_burst_of_10000_attacks_is_one_alert_with_a_count(
    make_engine: EngineFactory,
    bus: EventBus,
    client: TelemetryClient,
    clock: FakeClock,
    memory_store: InMemoryAlertStore,
) -> None:
    engine = make_engine(bus=bus)
    await engine.start()
    try:
        await eventually(
            lambda: engine.security_events == 0 and engine.ticks > 0,
            timeout=DEADLINE,
            what="the engine runs",
        )
        for _ in range(10_000):
            client.track_security_event("SqlInjection", "union select", client_ip="203.0.113.9")
        await eventually(
            lambda: engine.security_events == 10_000, timeout=DEADLINE, what="every event handled"
        )
    finally:
        await engine.stop()

    events = list(memory_store.events.values())
    assert kinds(events) == ["fired"]
    assert events[0].count == 10_000  # the burst came in at once: counted before firing
    [alert] = memory_store.alerts.values()
    assert alert.count == 10_000
    assert alert.severity == "Critical"
    assert alert.category == "Security"
    assert alert.labels["event_type"] == "SqlInjection"
    assert alert.labels["source"] == "203.0.113.9"
    assert alert.rule_id == SECURITY_RULE_ID
    assert "10,000 security events" in alert.description
    assert len(memory_store.outbox) == 2  # one per channel, not 10,000


async def test_severities_and_groups(
    make_engine: EngineFactory, bus: EventBus, client: TelemetryClient
) -> None:
    engine = make_engine(bus=bus)
    subscription = bus.subscribe("security.event", "security.critical")
    client.track_security_event("SqlInjection", "x", client_ip="1.1.1.1")
    client.track_security_event("UnauthorizedAccess", "x", client_ip="1.1.1.1")
    client.track_security_event("XssScript", "x", client_ip="1.1.1.1")
    client.track_security_event("XssScript", "x", client_ip="2.2.2.2")
    client.track_security_event("XssScript", "x", client_ip="2.2.2.2")
    client.track_security_event("RateLimit", "x", client_ip="1.1.1.1")  # Medium: rules do it
    client.track_security_event("LoginFailed", "x", client_ip="1.1.1.1")
    messages = []
    while not subscription.queue.empty():
        messages.append(subscription.queue.get_nowait())

    events = await engine.handle_security(messages)

    found = sorted(
        (e.labels["event_type"], e.labels["source"], str(e.severity), e.count) for e in events
    )
    assert found == [
        ("SqlInjection", "1.1.1.1", "Critical", 1),
        ("UnauthorizedAccess", "1.1.1.1", "Critical", 1),
        ("XssScript", "1.1.1.1", "High", 1),
        ("XssScript", "2.2.2.2", "High", 2),  # one alert for both
    ]
    assert sorted(a.count for a in engine.active_alerts()) == [1, 1, 1, 2]


async def test_a_group_resolves_after_a_quiet_window_and_repeats_while_it_lasts(
    make_engine: EngineFactory, bus: EventBus, client: TelemetryClient, clock: FakeClock
) -> None:
    settings = AlertingSettings(security_group_window=300, security_repeat_interval=600)
    engine = make_engine(bus=bus, settings=settings)
    subscription = bus.subscribe("security.critical")

    async def attack() -> list[str]:
        client.track_security_event("CommandInjection", "x", client_ip="9.9.9.9")
        return kinds(await engine.handle_security([subscription.queue.get_nowait()]))

    assert await attack() == ["fired"]
    for _ in range(3):  # 0..600 s: one attempt every 200 s, never quiet for 300 s
        clock.advance(200)
        assert kinds(await engine.evaluate()) == []
        assert await attack() == ([] if clock.time() % 600 else ["repeated"])
    clock.advance(299)
    assert await engine.evaluate() == []
    clock.advance(1)

    [resolved] = await engine.evaluate()

    assert resolved.kind is AlertEventKind.RESOLVED
    assert resolved.count == 4
    assert engine.active_alerts() == []


async def test_manual_resolve_of_an_ongoing_attack_does_not_renotify(
    make_engine: EngineFactory, bus: EventBus, client: TelemetryClient, clock: FakeClock
) -> None:
    engine = make_engine(bus=bus, settings=AlertingSettings(security_group_window=300))
    subscription = bus.subscribe("security.critical")

    async def attack() -> list[str]:
        client.track_security_event("SqlInjection", "x", client_ip="9.9.9.9")
        return kinds(await engine.handle_security([subscription.queue.get_nowait()]))

    assert await attack() == ["fired"]
    [alert] = engine.active_alerts()
    resolved = await engine.resolve(alert.id, "admin@example.com")
    assert resolved.state is AlertState.RESOLVED
    for _ in range(5):  # the attack goes on: muted
        clock.advance(60)
        assert await attack() == []
        assert await engine.evaluate() == []
    clock.advance(300)  # quiet for the group window: the mute is lifted
    assert await engine.evaluate() == []
    assert await attack() == ["fired"]
