"""Webhook: Alertmanager version 4 JSON, signed, against a real HTTP receiver."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from digitalme.monitoring.notifiers import DeliveryError, Notification, NotificationKind
from digitalme.monitoring.notifiers.webhook import WebhookNotifier, sign, verify_signature
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import WebhookSettings
from receivers import HttpReceiver, Reply

Make = Callable[..., Notification]
SECRET = "hmac-secret-of-32-characters-xyz"


def webhook(receiver: HttpReceiver, clock: FakeClock, **settings: object) -> WebhookNotifier:
    config = WebhookSettings.model_validate(
        {"enabled": True, "url": receiver.url("/alerts?token=hook-token-9"), **settings}
    )
    return WebhookNotifier(config, clock=clock)


async def test_a_firing_alert_in_alertmanager_format(
    http_receiver: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    notifier = webhook(http_receiver, clock, external_url="https://dm.example")
    notification = make_notification(
        properties={"runbook": "https://wiki/r/1"},
        affected_components=("api", "database"),
        count=3,
        dashboard_url="https://dm.example/alerts/alert-1",
    )
    receipt = await notifier.send(notification)
    await notifier.aclose()
    assert receipt.detail == "HTTP 200"
    (request,) = http_receiver.requests
    assert request.headers["idempotency-key"] == "alert-1:fired:1:slack"
    assert "x-digitalme-signature" not in request.headers
    payload = request.json()
    labels = {
        "alertname": "p95-latency",
        "category": "Performance",
        "route": "/api/personality",
        "severity": "critical",
    }
    assert payload == {
        "version": "4",
        "groupKey": '{}:{alertname="p95-latency", category="Performance", '
        'route="/api/personality", severity="critical"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "digitalme",
        "groupLabels": labels,
        "commonLabels": labels,
        "commonAnnotations": payload["alerts"][0]["annotations"],
        "externalURL": "https://dm.example",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {
                    "affected_components": "api, database",
                    "alert_id": "alert-1",
                    "count": "3",
                    "description": "p95 of http.server.duration is 2.4 s (threshold 2 s)",
                    "kind": "fired",
                    "runbook": "https://wiki/r/1",
                    "summary": "p95 latency over 2 s",
                    "threshold": "2",
                    "value": "2.4",
                },
                "startsAt": "2026-01-01T12:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "https://dm.example/alerts/alert-1",
                "fingerprint": "3f2a9c0d5b7e1a46",
            }
        ],
    }


async def test_a_resolved_alert(
    http_receiver: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    notification = make_notification(
        kind=NotificationKind.RESOLVED, resolved_by="ops", labels={"severity": "page"}
    )
    await webhook(http_receiver, clock).send(notification)
    payload = http_receiver.requests[0].json()
    assert payload["status"] == "resolved"
    alert = payload["alerts"][0]
    assert alert["status"] == "resolved"
    # Without an end time the notice's sending time ends it.
    assert alert["endsAt"] == clock.now().isoformat().replace("+00:00", "Z")
    assert alert["annotations"]["resolved_by"] == "ops"
    assert alert["labels"]["severity"] == "page"  # the alert's own label wins


async def test_signed_requests_verify_as_a_receiver_would(
    http_receiver: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    await webhook(http_receiver, clock, secret=SECRET).send(make_notification())
    (request,) = http_receiver.requests
    timestamp = request.headers["x-digitalme-timestamp"]
    signature = request.headers["x-digitalme-signature"]
    assert timestamp == str(int(clock.time()))
    assert signature == sign(SECRET, int(timestamp), request.body)
    assert signature.startswith("sha256=")
    assert len(signature) == len("sha256=") + 64

    def verify(body: bytes = request.body, stamp: str = timestamp, now: float = 0.0) -> bool:
        return verify_signature(
            SECRET, body, timestamp=stamp, signature=signature, now=clock.time() + now
        )

    assert verify()
    assert verify(now=299)
    assert not verify(now=301)  # a replay, minutes later
    assert not verify(body=request.body.replace(b"critical", b"low"))
    assert not verify(stamp=str(int(timestamp) + 1))
    assert not verify(stamp="soon")


async def test_failures_follow_the_http_policy(
    http_receiver: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    notifier = webhook(http_receiver, clock, secret=SECRET)
    http_receiver.script(Reply(503, b"busy", {"retry-after": "2"}))
    http_receiver.script(Reply(400, f"bad signature {SECRET}".encode()))
    with pytest.raises(DeliveryError) as retryable:
        await notifier.send(make_notification())
    with pytest.raises(DeliveryError) as refused:
        await notifier.send(make_notification())
    assert (retryable.value.permanent, retryable.value.retry_after) == (False, 2.0)
    assert refused.value.permanent
    assert refused.value.reason == "HTTP 400: bad signature ***"
    for text in (str(retryable.value), str(refused.value), repr(notifier)):
        assert SECRET not in text
        assert "hook-token-9" not in text
