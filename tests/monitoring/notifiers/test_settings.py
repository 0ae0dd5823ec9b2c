"""Channel settings: required keys named, values checked, secrets masked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from digitalme.settings import ConfigError, load_settings

SLACK_URL = "https://hooks.slack.com/services/T000/B000/slack-secret-token-1"
WEBHOOK_URL = "https://receiver.example.com/hook?token=webhook-secret-token-2"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DIGITALME"):
            monkeypatch.delenv(name)


def error_for(notifications: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(notifications=notifications)
    return str(caught.value)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"slack": {"enabled": True}},
            "notifications.slack.webhook_url: required when notifications.slack.enabled is true",
        ),
        (
            {"webhook": {"enabled": True}},
            "notifications.webhook.url: required when notifications.webhook.enabled is true",
        ),
        (
            {"sms": {"enabled": True}},
            "notifications.sms.account_sid: required when notifications.sms.enabled is true",
        ),
        (
            {"email": {"enabled": True}},
            "notifications.email.standard_alert_recipients: required "
            "(or critical_alert_recipients) when notifications.email.enabled is true",
        ),
    ],
)
def test_an_enabled_channel_needs_its_keys(section: dict[str, Any], message: str) -> None:
    assert message in error_for(section)


def test_every_missing_sms_key_is_named() -> None:
    text = error_for({"sms": {"enabled": True}})
    for key in ("account_sid", "auth_token", "from_number", "recipients"):
        assert f"notifications.sms.{key}: required" in text


def test_disabled_channels_need_nothing() -> None:
    notifications = load_settings().notifications
    assert not notifications.email.enabled
    assert notifications.slack.webhook_url is None
    assert notifications.email.security == "starttls"
    assert notifications.email.smtp_port == 587


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"slack": {"webhook_url": "ftp://x/y"}}, "notifications.slack.webhook_url: must be an"),
        ({"webhook": {"url": "not a url"}}, "notifications.webhook.url: must be an http"),
        ({"webhook": {"secret": "short"}}, "notifications.webhook.secret: must be at least 16"),
        ({"sms": {"recipients": ["5551234"]}}, "notifications.sms.recipients: not an E.164"),
        ({"sms": {"base_url": "api.twilio.com"}}, "notifications.sms.base_url: must be an http"),
        ({"email": {"sender": "nobody"}}, "notifications.email.sender: must be an email"),
        (
            {"email": {"standard_alert_recipients": ["ops"]}},
            "notifications.email.standard_alert_recipients: not an email address",
        ),
        ({"email": {"security": "ssl"}}, "notifications.email.security: Input should be"),
        ({"email": {"username": "u"}}, "notifications.email.password: required when"),
        ({"email": {"password": "p"}}, "notifications.email.password: set without"),
        (
            {"email": {"username": "u", "password": "p", "security": "none"}},
            "notifications.email.password: needs notifications.email.security starttls or tls",
        ),
        ({"email": {"ca_file": "/nonexistent/ca.pem"}}, "notifications.email.ca_file: Path"),
        ({"routing": {"critical": ["pager"]}}, "notifications.routing.critical.0: Input should"),
    ],
)
def test_bad_values_are_refused_naming_the_key(section: dict[str, Any], message: str) -> None:
    assert message in error_for(section)


def test_secret_urls_never_appear_in_errors() -> None:
    text = error_for({"slack": {"webhook_url": "ftp://hooks/slack-secret-token-1"}})
    assert "slack-secret-token-1" not in text


def test_secrets_are_masked_in_reprs_and_dumps() -> None:
    settings = load_settings(
        notifications={
            "email": {
                "enabled": True,
                "username": "alerts",
                "password": "smtp-password-3",
                "standard_alert_recipients": ["ops@example.com"],
            },
            "slack": {"enabled": True, "webhook_url": SLACK_URL},
            "sms": {
                "enabled": True,
                "account_sid": "AC0123",
                "auth_token": "twilio-token-4",
                "from_number": "+15005550006",
                "recipients": ["+15551234567"],
            },
            "webhook": {"enabled": True, "url": WEBHOOK_URL, "secret": "hmac-secret-value-5"},
        }
    )
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in (
        "smtp-password-3",
        "slack-secret-token-1",
        "twilio-token-4",
        "webhook-secret-token-2",
        "hmac-secret-value-5",
    ):
        assert secret not in shown


def test_routing_from_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITALME__NOTIFICATIONS__ROUTING__HIGH", '["slack"]')
    monkeypatch.setenv("DIGITALME__NOTIFICATIONS__ROUTING__RESOLVED_TO_FIRING_CHANNELS", "true")
    routing = load_settings().notifications.routing
    assert routing.high == ["slack"]
    assert routing.resolved_to_firing_channels is True
    assert routing.critical == ["email", "slack", "sms", "webhook"]


def test_channels_from_a_yaml_file(tmp_path: Path) -> None:
    config = tmp_path / "digitalme.yaml"
    config.write_text(
        "notifications:\n"
        "  email:\n"
        "    enabled: true\n"
        "    smtp_server: smtp.example.com\n"
        "    security: tls\n"
        "    smtp_port: 465\n"
        "    critical_alert_recipients: [admin@example.com]\n"
    )
    email = load_settings(config).notifications.email
    assert (email.security, email.smtp_port) == ("tls", 465)
    assert email.critical_alert_recipients == ["admin@example.com"]
