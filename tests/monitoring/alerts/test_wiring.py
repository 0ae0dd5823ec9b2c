"""The engine inside Monitoring: built from settings, started and stopped with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from digitalme.monitoring.alerts import (
    AlertEngine,
    AlertEvent,
    AlertEventKind,
    InMemoryAlertStore,
    RuleFileError,
    Severity,
    SqlAlertStore,
)
from digitalme.monitoring.alerts.defaults import DEFAULT_RULE_IDS, SLO_RULE_PREFIX
from digitalme.monitoring.alerts.model import AlertCategory
from digitalme.monitoring.facade import Monitoring, alert_route
from digitalme.monitoring.notifiers import Router
from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import load_settings
from monitoring.alerts.helpers import rule
from polling import eventually

DEADLINE = 10.0  # seconds; a bound for waiting, never a timing assertion

SLO_RULE_IDS = [
    f"{SLO_RULE_PREFIX}{tier}" for tier in ("page_fast", "page_slow", "ticket_fast", "ticket_slow")
]


def test_built_from_settings_with_the_defaults(tmp_path: Path) -> None:
    monitoring = Monitoring(load_settings(server={"data_dir": str(tmp_path)}))
    assert isinstance(monitoring.alerts, AlertEngine)
    assert isinstance(monitoring.alerts.store, InMemoryAlertStore)
    assert [rule.id for rule in monitoring.alerts.rules] == [*DEFAULT_RULE_IDS, *SLO_RULE_IDS]
    disabled = Monitoring(load_settings(alerting={"enabled": False}))
    assert disabled.alerts is None


async def test_uses_the_telemetry_store_when_there_is_one(tmp_path: Path) -> None:
    store = TelemetryStore(f"sqlite+aiosqlite:///{tmp_path / 'telemetry.db'}")
    try:
        monitoring = Monitoring(load_settings(), store=store)
        assert monitoring.alerts is not None
        assert isinstance(monitoring.alerts.store, SqlAlertStore)
    finally:
        await store.close()


def test_a_bad_rule_file_stops_construction(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - id: x\n    name: X\n    metric_name: m\n    operator: '>'\n")
    with pytest.raises(RuleFileError, match=r"rules\[0\] \(id 'x'\): threshold: Field required"):
        Monitoring(load_settings(alerting={"rule_files": [str(path)]}))


async def test_started_and_stopped_with_monitoring(clock: FakeClock) -> None:
    monitoring = Monitoring(load_settings(), clock=clock, strict=True)
    engine = monitoring.alerts
    assert engine is not None
    await monitoring.start()
    try:
        assert engine.running
        monitoring.client.track_security_event("SqlInjection", "x", client_ip="198.51.100.7")
        await eventually(lambda: engine.active_alerts() != [], timeout=DEADLINE, what="an alert")
        [alert] = engine.active_alerts()
        assert alert.severity is Severity.CRITICAL
        assert alert.category is AlertCategory.SECURITY
        await eventually(lambda: engine.ticks > 0, timeout=DEADLINE, what="a tick")
    finally:
        await monitoring.stop()
    assert not engine.running


def _event(severity: Severity, kind: AlertEventKind = AlertEventKind.FIRED) -> AlertEvent:
    return AlertEvent(
        alert_id="a",
        rule_id="r",
        fingerprint="f",
        kind=kind,
        at=FakeClock().now(),
        severity=severity,
        category=AlertCategory.ERROR,
        title="t",
        description="d",
        starts_at=FakeClock().now(),
    )


ALL_CHANNELS = {
    "email": {
        "enabled": True,
        "critical_alert_recipients": ["oncall@example.com"],
    },
    "slack": {"enabled": True, "webhook_url": "https://hooks.example/services/T/B/x"},
    "sms": {
        "enabled": True,
        "account_sid": "AC123",
        "auth_token": "token",
        "from_number": "+15550000000",
        "recipients": ["+15551234567"],
    },
}


def test_the_default_route_follows_the_plan() -> None:
    route = alert_route(
        Router.from_settings(load_settings(notifications=ALL_CHANNELS).notifications)
    )
    assert route(_event(Severity.CRITICAL), None, ()) == ["email", "slack", "sms"]
    assert route(_event(Severity.HIGH), None, ()) == ["email", "slack"]
    assert route(_event(Severity.MEDIUM), None, ()) == ["slack"]
    assert route(_event(Severity.LOW), None, ()) == ["slack"]
    assert route(_event(Severity.LOW, AlertEventKind.REPEATED), None, ()) == ["slack"]
    resolved = _event(Severity.CRITICAL, AlertEventKind.RESOLVED)
    assert route(resolved, None, ("email", "slack", "sms")) == ["slack"]


def test_the_route_takes_the_rules_channels_and_the_routing_settings() -> None:
    notifications = {**ALL_CHANNELS, "routing": {"resolved_to_firing_channels": True}}
    route = alert_route(
        Router.from_settings(load_settings(notifications=notifications).notifications)
    )
    resolved = _event(Severity.CRITICAL, AlertEventKind.RESOLVED)
    assert route(resolved, None, ("email", "sms")) == ["email", "sms"]
    own = rule(notification_channels=["email", "sms"], severity="High")
    # SMS carries Critical alerts only, whatever the rule says
    assert route(_event(Severity.HIGH), own, ()) == ["email"]
    # channels that are not enabled are skipped
    only_slack = load_settings(notifications={"slack": ALL_CHANNELS["slack"]})
    route = alert_route(Router.from_settings(only_slack.notifications))
    assert route(_event(Severity.CRITICAL), None, ()) == ["slack"]


async def test_the_engine_routes_through_the_notification_settings(clock: FakeClock) -> None:
    settings = load_settings(notifications={"slack": ALL_CHANNELS["slack"]})
    monitoring = Monitoring(settings, clock=clock, strict=True)
    engine = monitoring.alerts
    assert engine is not None
    alert = await engine.raise_alert("t", "d", Severity.CRITICAL, AlertCategory.ERROR)
    assert isinstance(engine.store, InMemoryAlertStore)
    assert [d.channel for d in await engine.store.deliveries(alert_id=alert.id)] == ["slack"]


def test_serve_stops_with_one_line_on_a_bad_rule_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: x, name: X, metric_name: m, operator: '>', threshold: 1,")
    config = tmp_path / "config.yaml"
    config.write_text(f"server: {{data_dir: {tmp_path}}}\nalerting: {{rule_files: [{rules}]}}\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIGITALME")}
    result = subprocess.run(
        [sys.executable, "-m", "digitalme", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"digitalme: {rules}: invalid YAML at line 2: ")
