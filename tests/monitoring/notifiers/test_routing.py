"""Routing by severity, kind and rule among the enabled channels."""

from __future__ import annotations

import pytest

from digitalme.monitoring.notifiers import NotificationKind, Router, enabled_channels
from digitalme.monitoring.telemetry.items import Severity
from digitalme.settings import NotificationSettings, RoutingSettings, load_settings

ALL = ["email", "slack", "sms", "webhook"]
FIRED = NotificationKind.FIRED
RESOLVED = NotificationKind.RESOLVED


def router(enabled: list[str] | None = None, **routing: object) -> Router:
    return Router(RoutingSettings.model_validate(routing), ALL if enabled is None else enabled)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (Severity.CRITICAL, ["email", "slack", "sms", "webhook"]),
        (Severity.HIGH, ["email", "slack", "webhook"]),
        (Severity.MEDIUM, ["slack", "webhook"]),
        (Severity.LOW, ["slack", "webhook"]),
    ],
)
def test_defaults_follow_the_plan(severity: Severity, expected: list[str]) -> None:
    assert router().channels(severity, FIRED) == expected


def test_repeated_and_test_notices_route_like_firing_ones() -> None:
    for kind in (NotificationKind.REPEATED, NotificationKind.TEST):
        assert router().channels(Severity.HIGH, kind) == ["email", "slack", "webhook"]


def test_only_enabled_channels_are_returned() -> None:
    assert router(["slack"]).channels(Severity.CRITICAL, FIRED) == ["slack"]
    assert router([]).channels(Severity.CRITICAL, FIRED) == []


def test_resolved_notices_go_to_slack_by_default() -> None:
    assert router().channels(Severity.CRITICAL, RESOLVED) == ["slack", "webhook"]


def test_resolved_can_follow_the_firing_notice() -> None:
    routed = router(resolved_to_firing_channels=True)
    fired = routed.channels(Severity.CRITICAL, FIRED)
    assert routed.channels(Severity.CRITICAL, RESOLVED, fired_channels=fired) == fired
    # Unknown firing channels (an alert from before the setting): the resolved list.
    assert routed.channels(Severity.CRITICAL, RESOLVED) == ["slack", "webhook"]


def test_a_rules_channels_override_routing() -> None:
    routed = router()
    assert routed.channels(Severity.LOW, FIRED, ["email"]) == ["email"]
    assert routed.channels(Severity.LOW, RESOLVED, ["email"]) == ["email"]
    assert routed.channels(Severity.CRITICAL, FIRED, []) == []


def test_sms_is_for_critical_alerts_only_whatever_the_lists_say() -> None:
    routed = router(low=["sms", "slack"], resolved_to_firing_channels=True)
    assert routed.channels(Severity.LOW, FIRED) == ["slack"]
    assert routed.channels(Severity.HIGH, FIRED, ["sms", "email"]) == ["email"]
    assert routed.channels(Severity.HIGH, RESOLVED, fired_channels=["sms"]) == []
    assert routed.channels(Severity.CRITICAL, FIRED, ["sms"]) == ["sms"]


def test_each_channel_once_in_list_order() -> None:
    routed = router()
    assert routed.channels(Severity.HIGH, FIRED, ["webhook", "email", "webhook"]) == [
        "webhook",
        "email",
    ]


def test_unknown_and_disabled_rule_channels_are_dropped() -> None:
    assert router(["slack"]).channels(Severity.HIGH, FIRED, ["pager", "email", "slack"]) == [
        "slack"
    ]


def test_router_from_settings_knows_the_enabled_channels() -> None:
    settings = load_settings(
        notifications={
            "slack": {"enabled": True, "webhook_url": "https://hooks.example.com/services/T/B/x"},
            "routing": {"high": ["email", "slack"]},
        }
    ).notifications
    assert enabled_channels(settings) == ["slack"]
    assert Router.from_settings(settings).channels(Severity.HIGH, FIRED) == ["slack"]
    assert enabled_channels(NotificationSettings()) == []


def test_routing_lists_name_known_channels_only() -> None:
    with pytest.raises(ValueError, match=r"high\.0"):
        RoutingSettings.model_validate({"high": ["pager"]})
