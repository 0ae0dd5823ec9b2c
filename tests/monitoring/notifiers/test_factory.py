"""Building the enabled channels, and the in-memory double the dispatcher's tests use."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from digitalme.monitoring.notifiers import (
    ChannelConfigError,
    DeliveryError,
    Notification,
    Notifier,
    build_notifiers,
)
from digitalme.monitoring.notifiers.errors import NotificationError
from digitalme.monitoring.notifiers.slack import SlackNotifier
from digitalme.monitoring.testing import RecordingNotifier
from digitalme.settings import NotificationSettings, SlackSettings, load_settings

Make = Callable[..., Notification]
SECRETS = ("slack-token-1", "twilio-token-2", "webhook-token-3", "hmac-secret-0123456789", "pw-4")


def all_channels() -> NotificationSettings:
    return load_settings(
        notifications={
            "email": {
                "enabled": True,
                "username": "alerts",
                "password": "pw-4",
                "critical_alert_recipients": ["oncall@example.com"],
            },
            "slack": {"enabled": True, "webhook_url": "https://hooks.example/x/slack-token-1"},
            "sms": {
                "enabled": True,
                "account_sid": "AC1",
                "auth_token": "twilio-token-2",
                "from_number": "+15005550006",
                "recipients": ["+15551230001"],
            },
            "webhook": {
                "enabled": True,
                "url": "https://receiver.example/hook?token=webhook-token-3",
                "secret": "hmac-secret-0123456789",
            },
        }
    ).notifications


async def test_one_notifier_per_enabled_channel() -> None:
    notifiers = build_notifiers(all_channels())
    assert list(notifiers) == ["email", "slack", "sms", "webhook"]
    for name, notifier in notifiers.items():
        assert isinstance(notifier, Notifier)
        assert notifier.name == name
        assert all(secret not in repr(notifier) for secret in SECRETS)
        await notifier.aclose()


def test_nothing_enabled_nothing_built() -> None:
    assert build_notifiers(NotificationSettings()) == {}


def test_a_notifier_built_by_hand_from_a_disabled_section_names_the_key() -> None:
    with pytest.raises(ChannelConfigError, match=r"notifications\.slack\.webhook_url"):
        SlackNotifier(SlackSettings())


def test_errors_share_the_monitoring_root() -> None:
    from digitalme.monitoring.errors import MonitoringError

    error = DeliveryError("slack", "HTTP 500", permanent=False, retry_after=1.5, status=500)
    assert isinstance(error, NotificationError)
    assert isinstance(error, MonitoringError)
    assert str(error) == "slack: HTTP 500 (retry after 1.5 s)"
    assert isinstance(ChannelConfigError("x"), NotificationError)


async def test_recording_notifier_fails_as_told_then_records(make_notification: Make) -> None:
    notifier = RecordingNotifier("slack")
    assert isinstance(notifier, Notifier)
    notifier.fail(2, retry_after=3.0)
    for _ in range(2):
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(make_notification())
        assert (caught.value.channel, caught.value.permanent) == ("slack", False)
        assert caught.value.retry_after == 3.0
    receipt = await notifier.send(make_notification())
    assert (receipt.channel, receipt.detail) == ("slack", "recorded #1")
    assert notifier.keys == ["alert-1:fired:1:slack"]
    assert len(notifier.attempts) == 3


async def test_recording_notifier_can_refuse_until_recovered(make_notification: Make) -> None:
    notifier = RecordingNotifier()
    notifier.fail(None, permanent=True, reason="HTTP 404: no_service")
    for _ in range(3):
        with pytest.raises(DeliveryError, match="no_service"):
            await notifier.send(make_notification())
    notifier.recover()
    await notifier.send(make_notification())
    await notifier.aclose()
    assert (len(notifier.sent), notifier.closed) == (1, True)
