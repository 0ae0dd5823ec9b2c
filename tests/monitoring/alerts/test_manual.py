"""Alerts by hand (the plan's SendAlertAsync) and what resolving by hand means."""

from __future__ import annotations

import pytest

from digitalme.monitoring.alerts import (
    MANUAL_RULE_ID,
    AlertCategory,
    AlertNotFound,
    AlertState,
    InMemoryAlertStore,
    Severity,
)
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import AlertingSettings
from monitoring.alerts.helpers import EngineFactory, Feed, Routes, kinds, rule


async def test_raise_alert_fires_and_routes_without_a_rule(
    make_engine: EngineFactory, memory_store: InMemoryAlertStore, routes: Routes
) -> None:
    engine = make_engine()
    alert = await engine.raise_alert(
        "Disk almost full",
        "db-1 has 2% free",
        Severity.HIGH,
        AlertCategory.AVAILABILITY,
        {"host": "db-1", "free_percent": 2},
        ["database"],
    )

    assert alert.state is AlertState.FIRING
    assert alert.rule_id == MANUAL_RULE_ID
    assert alert.affected_components == ["database"]
    [event] = memory_store.events.values()
    assert event.kind == "fired"
    assert event.title == "Disk almost full"
    assert routes.calls[0][1] is None
    payload = next(iter(memory_store.outbox.values())).payload
    assert payload["properties"] == {"host": "db-1", "free_percent": "2"}
    assert payload["affected_components"] == ["database"]


async def test_resolve_records_who_and_sends_a_resolved_event(
    make_engine: EngineFactory, memory_store: InMemoryAlertStore, clock: FakeClock
) -> None:
    engine = make_engine()
    alert = await engine.raise_alert("x", "y", Severity.LOW, AlertCategory.BUSINESS)
    clock.advance(90)

    resolved = await engine.resolve(alert.id, "ops@example.com")

    assert resolved.resolved_by == "ops@example.com"
    assert resolved.resolved_at == clock.now()
    events = sorted(memory_store.events.values(), key=lambda e: e.at)
    assert kinds(events) == ["fired", "resolved"]
    assert events[1].resolved_by == "ops@example.com"
    assert engine.active_alerts() == []
    # resolving again is a no-op
    again = await engine.resolve(alert.id, "someone-else")
    assert again.resolved_by == "ops@example.com"
    assert len(memory_store.events) == 2


async def test_resolve_an_unknown_alert(make_engine: EngineFactory) -> None:
    with pytest.raises(AlertNotFound):
        await make_engine().resolve("nope", "me")


async def test_resolving_while_the_condition_holds_mutes_until_it_clears(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock
) -> None:
    engine = make_engine(rule(evaluation_window=10))
    feed("m", 50)
    [fired] = await engine.evaluate()
    await engine.resolve(fired.alert_id, "ops")

    for _ in range(20):  # still breaching, tick after tick: no new alert, no notification
        clock.advance(1)
        feed("m", 50)
        assert await engine.evaluate() == []

    clock.advance(10)  # the condition clears once
    assert await engine.evaluate() == []
    feed("m", 50)  # a new breach is a new alert
    [again] = await engine.evaluate()
    assert again.kind == "fired"
    assert again.alert_id != fired.alert_id
    assert again.fingerprint == fired.fingerprint


async def test_the_mute_ends_after_resolve_mute_if_the_condition_never_clears(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock
) -> None:
    engine = make_engine(rule(evaluation_window=10), settings=AlertingSettings(resolve_mute=60))
    feed("m", 50)
    [fired] = await engine.evaluate()
    await engine.resolve(fired.alert_id, "ops")
    fired_again = []
    for _ in range(150):  # 150 s of a breach that never ends: at most one new alert per mute
        clock.advance(1)
        feed("m", 50)
        fired_again += await engine.evaluate()
    assert kinds(fired_again) == ["fired"]
