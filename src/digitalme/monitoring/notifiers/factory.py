"""Building the enabled channels from settings."""

from __future__ import annotations

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.notifiers.email import EmailNotifier
from digitalme.monitoring.notifiers.protocol import Notifier
from digitalme.monitoring.notifiers.slack import SlackNotifier
from digitalme.monitoring.notifiers.sms import SmsNotifier
from digitalme.monitoring.notifiers.webhook import WebhookNotifier
from digitalme.settings import ChannelName, NotificationSettings

__all__ = ["build_notifiers"]


def build_notifiers(
    settings: NotificationSettings, *, clock: Clock | None = None
) -> dict[str, Notifier]:
    """One notifier per enabled channel, keyed by channel name.

    Settings validation has already refused an enabled channel that lacks a
    required key (naming it), so building cannot fail on configuration.
    """
    notifiers: dict[str, Notifier] = {}
    if settings.email.enabled:
        notifiers[ChannelName.EMAIL] = EmailNotifier(settings.email, clock=clock)
    if settings.slack.enabled:
        notifiers[ChannelName.SLACK] = SlackNotifier(settings.slack, clock=clock)
    if settings.sms.enabled:
        notifiers[ChannelName.SMS] = SmsNotifier(settings.sms, clock=clock)
    if settings.webhook.enabled:
        notifiers[ChannelName.WEBHOOK] = WebhookNotifier(settings.webhook, clock=clock)
    return notifiers
