"""Slack: the plan's message, posted to an incoming webhook.

The message is the plan's: a headline (``🚨 Alert: <title>``, or ``🟢 Alert
Resolved: <title>``) and one attachment coloured by severity with the fields
Description, Severity, Category and Time, then the facts that apply (value,
threshold, events, components, rule, alert id). Colours follow the plan:
Critical ``danger`` (red), High ``warning`` (amber-orange), Medium and Low
``#ffaa00``, and ``good`` (green) for every resolved notice.

Alert text is escaped the way Slack asks (``&``, ``<``, ``>``), so a title
cannot mention ``<!channel>`` or forge a link.
"""

from __future__ import annotations

import json
from typing import Any

from digitalme.monitoring.clock import Clock, SystemClock
from digitalme.monitoring.notifiers.errors import ChannelConfigError
from digitalme.monitoring.notifiers.http import HttpPoster
from digitalme.monitoring.notifiers.masking import SecretMask
from digitalme.monitoring.notifiers.message import (
    Notification,
    NotificationKind,
    facts,
    headline,
)
from digitalme.monitoring.notifiers.protocol import DeliveryReceipt
from digitalme.monitoring.telemetry.items import Severity
from digitalme.settings import SlackSettings

__all__ = ["COLOURS", "RESOLVED_COLOUR", "SlackNotifier", "slack_message"]

COLOURS: dict[Severity, str] = {
    Severity.CRITICAL: "danger",
    Severity.HIGH: "warning",
    Severity.MEDIUM: "#ffaa00",
    Severity.LOW: "#ffaa00",
}
RESOLVED_COLOUR = "good"
# The Description field takes the whole width; the others sit two by two.
_LONG_FIELDS = frozenset({"Description", "Components"})
MAX_FIELD_LENGTH = 2000  # Slack truncates long attachment fields anyway; keep posts small


def escape(text: str) -> str:
    """Slack's escaping for message text: only ``&``, ``<`` and ``>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_FIELD_LENGTH else text[: MAX_FIELD_LENGTH - 1] + "…"


def _text(notification: Notification) -> str:
    title = escape(" ".join(notification.title.split()))
    match notification.kind:
        case NotificationKind.RESOLVED:
            return f"🟢 Alert Resolved: {title}"
        case NotificationKind.REPEATED:
            return f"🚨 Alert (still firing): {title}"
        case NotificationKind.TEST:
            return f"🧪 Test notification: {title}"
        case _:
            return f"🚨 Alert: {title}"


def slack_message(notification: Notification, channel: str = "") -> dict[str, Any]:
    """The JSON body posted to the webhook."""
    colour = RESOLVED_COLOUR if notification.resolved else COLOURS[notification.severity]
    attachment: dict[str, Any] = {
        "color": colour,
        "fallback": escape(headline(notification)),
        "fields": [
            {"title": title, "value": _clip(escape(value)), "short": title not in _LONG_FIELDS}
            for title, value in facts(notification)
        ],
        "footer": "DigitalMe monitoring",
        "ts": int(notification.starts_at.timestamp()),
    }
    if notification.dashboard_url:
        attachment["title"] = "Open in the dashboard"
        attachment["title_link"] = notification.dashboard_url
    message: dict[str, Any] = {"text": _text(notification), "attachments": [attachment]}
    if channel:
        message["channel"] = channel
    return message


class SlackNotifier:
    """Posts the plan's message to a Slack incoming webhook."""

    name = "slack"

    def __init__(self, settings: SlackSettings, *, clock: Clock | None = None) -> None:
        if settings.webhook_url is None:
            raise ChannelConfigError("notifications.slack.webhook_url")
        self._url = settings.webhook_url.get_secret_value()
        self._channel = settings.channel
        self._poster = HttpPoster(
            self.name,
            timeout=settings.timeout,
            mask=SecretMask(urls=[self._url]),
            clock=clock or SystemClock(),
        )

    async def send(self, notification: Notification) -> DeliveryReceipt:
        body = json.dumps(slack_message(notification, self._channel)).encode()
        answer = await self._poster.post(
            self._url, content=body, headers={"content-type": "application/json"}
        )
        return DeliveryReceipt(self.name, f"HTTP {answer.status}")

    async def aclose(self) -> None:
        await self._poster.aclose()

    def __repr__(self) -> str:
        return f"SlackNotifier(channel={self._channel!r})"
