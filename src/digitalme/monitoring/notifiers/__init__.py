"""Alert notification channels: email, Slack, SMS (Twilio) and Alertmanager-style webhooks.

The alert engine decides *that* something must be said; the dispatcher decides
*when* (outbox, retries); this package says it: :class:`Router` picks the
channels for a notification and each :class:`Notifier` delivers it once or
raises :class:`DeliveryError` saying whether a retry can help.
"""

from __future__ import annotations

from digitalme.monitoring.notifiers.errors import (
    ChannelConfigError,
    DeliveryError,
    NotificationError,
)
from digitalme.monitoring.notifiers.factory import build_notifiers
from digitalme.monitoring.notifiers.message import Notification, NotificationKind
from digitalme.monitoring.notifiers.protocol import DeliveryReceipt, Notifier
from digitalme.monitoring.notifiers.routing import Router, enabled_channels
from digitalme.settings import ChannelName

__all__ = [
    "ChannelConfigError",
    "ChannelName",
    "DeliveryError",
    "DeliveryReceipt",
    "Notification",
    "NotificationError",
    "NotificationKind",
    "Notifier",
    "Router",
    "build_notifiers",
    "enabled_channels",
]
