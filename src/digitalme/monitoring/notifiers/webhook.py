"""Webhook: alerts as Alertmanager webhook JSON (version 4), signed when a secret is set.

Every receiver written for Alertmanager's ``webhook_config`` understands the
body. Each notification is one group holding one alert, grouped by all of its
labels, as Alertmanager would send it with ``group_by: ['...']``:

- ``labels``: the alert's labels, plus ``alertname`` (the rule id, else the
  title), ``severity`` (lowercase: ``critical``, ``high``, ``medium``, ``low``)
  and ``category`` when the alert's labels do not already have them;
- ``annotations``: the alert's properties, then ``summary`` (title),
  ``description``, ``alert_id``, ``kind`` and, when known, ``value``,
  ``threshold``, ``count``, ``affected_components`` and ``resolved_by``;
- ``status`` is ``resolved`` for a resolved notice and ``firing`` otherwise;
  ``endsAt`` of a firing alert is ``0001-01-01T00:00:00Z`` as in Alertmanager.

Headers: ``Idempotency-Key`` (the notification key: the same on every retry, so
a receiver can drop duplicates) and, when ``notifications.webhook.secret`` is
set, ``X-DigitalMe-Timestamp`` (Unix seconds) and ``X-DigitalMe-Signature:
sha256=<hex>``, the HMAC-SHA256 with the secret of ``<timestamp>.`` followed by
the raw body. The timestamp is inside the signed text so that a captured
request cannot be replayed later with a fresh timestamp. A receiver verifies
with :func:`verify_signature`: recompute over the raw bytes it received,
compare in constant time, and refuse a timestamp more than five minutes away
from its clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from digitalme.monitoring.clock import Clock, SystemClock
from digitalme.monitoring.notifiers.errors import ChannelConfigError
from digitalme.monitoring.notifiers.http import HttpPoster
from digitalme.monitoring.notifiers.masking import SecretMask
from digitalme.monitoring.notifiers.message import Notification
from digitalme.monitoring.notifiers.protocol import DeliveryReceipt
from digitalme.settings import WebhookSettings

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookNotifier",
    "alertmanager_payload",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "X-DigitalMe-Signature"
TIMESTAMP_HEADER = "X-DigitalMe-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_TOLERANCE = 300.0  # seconds a receiver should accept between clocks
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt while firing
MAX_ANNOTATION_LENGTH = 4096


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _clip(text: str) -> str:
    if len(text) <= MAX_ANNOTATION_LENGTH:
        return text
    return text[: MAX_ANNOTATION_LENGTH - 1] + "…"


def _labels(notification: Notification) -> dict[str, str]:
    labels = dict(notification.labels)
    labels.setdefault("alertname", notification.rule_id or notification.title)
    labels.setdefault("severity", notification.severity.value.lower())
    labels.setdefault("category", notification.category)
    return dict(sorted(labels.items()))


def _annotations(notification: Notification) -> dict[str, str]:
    notes = dict(notification.properties)
    notes.update(
        summary=notification.title,
        description=notification.description,
        alert_id=notification.alert_id,
        kind=str(notification.kind),
    )
    optional = {
        "value": None if notification.value is None else f"{notification.value:g}",
        "threshold": None if notification.threshold is None else f"{notification.threshold:g}",
        "count": str(notification.count) if notification.count > 1 else None,
        "affected_components": ", ".join(notification.affected_components) or None,
        "resolved_by": notification.resolved_by,
    }
    notes.update({key: value for key, value in optional.items() if value is not None})
    return {key: _clip(value) for key, value in sorted(notes.items())}


def _group_key(labels: dict[str, str]) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{}:{" + ", ".join(f"{key}={quoted(value)}" for key, value in labels.items()) + "}"


def alertmanager_payload(
    notification: Notification, *, receiver: str, external_url: str, now: datetime
) -> dict[str, Any]:
    """The version 4 body for ``notification`` (``now`` ends a resolved alert without an end)."""
    status = "resolved" if notification.resolved else "firing"
    labels = _labels(notification)
    annotations = _annotations(notification)
    ends_at = _rfc3339(notification.ends_at or now) if notification.resolved else ZERO_TIME
    return {
        "version": "4",
        "groupKey": _group_key(labels),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": _rfc3339(notification.starts_at),
                "endsAt": ends_at,
                "generatorURL": notification.dashboard_url or "",
                "fingerprint": notification.fingerprint,
            }
        ],
    }


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``<timestamp>.<body>``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    *,
    timestamp: str,
    signature: str,
    now: float,
    tolerance: float = SIGNATURE_TOLERANCE,
) -> bool:
    """What a receiver does: true when ``signature`` is ours and ``timestamp`` is fresh."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


class WebhookNotifier:
    """POSTs Alertmanager-format JSON to ``notifications.webhook.url``."""

    name = "webhook"

    def __init__(self, settings: WebhookSettings, *, clock: Clock | None = None) -> None:
        if settings.url is None:
            raise ChannelConfigError("notifications.webhook.url")
        self._url = settings.url.get_secret_value()
        self._secret = None if settings.secret is None else settings.secret.get_secret_value()
        self._receiver = settings.receiver
        self._external_url = settings.external_url
        self._clock = clock or SystemClock()
        self._poster = HttpPoster(
            self.name,
            timeout=settings.timeout,
            mask=SecretMask(secrets=[self._secret], urls=[self._url]),
            clock=self._clock,
        )

    async def send(self, notification: Notification) -> DeliveryReceipt:
        payload = alertmanager_payload(
            notification,
            receiver=self._receiver,
            external_url=self._external_url,
            now=self._clock.now(),
        )
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"content-type": "application/json", IDEMPOTENCY_HEADER: notification.key}
        if self._secret is not None:
            timestamp = int(self._clock.time())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        answer = await self._poster.post(self._url, content=body, headers=headers)
        return DeliveryReceipt(self.name, f"HTTP {answer.status}")

    async def aclose(self) -> None:
        await self._poster.aclose()

    def __repr__(self) -> str:
        return f"WebhookNotifier(receiver={self._receiver!r}, signed={self._secret is not None})"
