"""Slack: the plan's message, against a real HTTP receiver standing in for the webhook."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from digitalme.monitoring.notifiers import DeliveryError, Notification, NotificationKind
from digitalme.monitoring.notifiers.slack import SlackNotifier
from digitalme.monitoring.telemetry.items import Severity
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import SlackSettings
from receivers import HttpReceiver, Reply

Make = Callable[..., Notification]
TOKEN_PATH = "/services/T0001/B0001/XXslackTOKENxx"


def slack(receiver: HttpReceiver, clock: FakeClock, **settings: object) -> SlackNotifier:
    config = SlackSettings.model_validate(
        {"enabled": True, "webhook_url": receiver.url(TOKEN_PATH), **settings}
    )
    return SlackNotifier(config, clock=clock)


async def test_the_plans_message(
    http_receiver: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    notifier = slack(http_receiver, clock)
    receipt = await notifier.send(make_notification(dashboard_url="https://dm.example/alerts/1"))
    await notifier.aclose()
    assert (receipt.channel, receipt.detail) == ("slack", "HTTP 200")
    (request,) = http_receiver.requests
    assert request.path == TOKEN_PATH
    assert request.headers["content-type"] == "application/json"
    message = request.json()
    assert message["text"] == "🚨 Alert: p95 latency over 2 s"
    assert message["channel"] == "#digitalme-alerts"
    (attachment,) = message["attachments"]
    assert attachment["color"] == "danger"
    assert attachment["title_link"] == "https://dm.example/alerts/1"
    fields = attachment["fields"]
    assert fields[:4] == [
        {
            "title": "Description",
            "value": "p95 of http.server.duration is 2.4 s (threshold 2 s)",
            "short": False,
        },
        {"title": "Severity", "value": "Critical", "short": True},
        {"title": "Category", "value": "Performance", "short": True},
        {"title": "Time", "value": "2026-01-01 12:00:00 UTC", "short": True},
    ]
    assert {"title": "Threshold", "value": "2", "short": True} in fields


@pytest.mark.parametrize(
    ("severity", "colour"),
    [
        (Severity.CRITICAL, "danger"),
        (Severity.HIGH, "warning"),
        (Severity.MEDIUM, "#ffaa00"),
        (Severity.LOW, "#ffaa00"),
    ],
)
async def test_colour_by_severity(
    http_receiver: HttpReceiver,
    clock: FakeClock,
    make_notification: Make,
    severity: Severity,
    colour: str,
) -> None:
    await slack(http_receiver, clock).send(make_notification(severity=severity))
    assert http_receiver.requests[0].json()["attachments"][0]["color"] == colour


async def test_a_green_resolved_message(
    http_receiver: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    notification = make_notification(
        kind=NotificationKind.RESOLVED,
        ends_at=make_notification().starts_at.replace(hour=13),
        resolved_by="admin@example.com",
    )
    await slack(http_receiver, clock, channel="").send(notification)
    message = http_receiver.requests[0].json()
    assert message["text"] == "🟢 Alert Resolved: p95 latency over 2 s"
    assert "channel" not in message
    attachment = message["attachments"][0]
    assert attachment["color"] == "good"
    fields = {field["title"]: field["value"] for field in attachment["fields"]}
    assert fields["Resolved at"] == "2026-01-01 13:00:00 UTC"
    assert fields["Resolved by"] == "admin@example.com"


async def test_alert_text_cannot_ping_or_forge_links(
    http_receiver: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    notification = make_notification(
        title="<!channel> hi", description="<https://evil.example|click> & more"
    )
    await slack(http_receiver, clock).send(notification)
    message = http_receiver.requests[0].json()
    assert message["text"] == "🚨 Alert: &lt;!channel&gt; hi"
    description = message["attachments"][0]["fields"][0]["value"]
    assert description == "&lt;https://evil.example|click&gt; &amp; more"


async def test_500_is_retried_later(
    http_receiver: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    http_receiver.script(Reply(500, b"rollup_error"))
    notifier = slack(http_receiver, clock)
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(make_notification())
    assert not caught.value.permanent
    assert caught.value.reason == "HTTP 500: rollup_error"
    assert (await notifier.send(make_notification())).detail == "HTTP 200"


async def test_429_carries_retry_after(
    http_receiver: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    http_receiver.script(Reply(429, b"rate_limited", {"Retry-After": "30"}))
    with pytest.raises(DeliveryError) as caught:
        await slack(http_receiver, clock).send(make_notification())
    assert (caught.value.permanent, caught.value.retry_after) == (False, 30.0)
    assert caught.value.status == 429


@pytest.mark.parametrize(
    ("status", "body"),
    [(400, b"invalid_payload"), (403, b"action_prohibited"), (404, b"no_service"),
     (410, b"channel_is_archived")],
)  # fmt: skip
async def test_refusals_are_permanent_and_say_why(
    http_receiver: HttpReceiver,
    clock: FakeClock,
    make_notification: Make,
    status: int,
    body: bytes,
) -> None:
    http_receiver.script(Reply(status, body))
    with pytest.raises(DeliveryError) as caught:
        await slack(http_receiver, clock).send(make_notification())
    assert caught.value.permanent
    assert caught.value.reason == f"HTTP {status}: {body.decode()}"


async def test_the_webhook_url_never_shows(
    http_receiver: HttpReceiver,
    clock: FakeClock,
    make_notification: Make,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    notifier = slack(http_receiver, clock)
    # A receiver that echoes the path it was called on, as some proxies do.
    http_receiver.script(Reply(404, f"no route for {TOKEN_PATH}".encode()))
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(make_notification())
    receipt = await notifier.send(make_notification())
    shown = [str(caught.value), repr(caught.value), receipt.detail, repr(notifier)]
    shown += [record.getMessage() for record in caplog.records]
    assert caught.value.reason == "HTTP 404: no route for ***"
    assert all("XXslackTOKENxx" not in text for text in shown)
