"""Routing: which channels get a notification.

The defaults are the plan's (``notifications.routing``): Critical -> email,
Slack, SMS; High -> email, Slack; Medium and Low -> Slack; resolved notices ->
Slack; plus ``webhook`` in every list (it feeds another system, which should
see everything). The first of these that applies picks the list:

1. with ``resolved_to_firing_channels``, a resolved notice goes to the channels
   its firing notice went to (``fired_channels``, when the caller knows them);
2. a rule's own channel list, when it has one, replaces the routing for every
   notice of its alerts, resolved ones included (they go where the rule sends
   the firing ones); an empty list means "notify nobody";
3. the routing list of the severity, or ``resolved`` for a resolved notice.

Then SMS is dropped unless the alert is Critical (whatever a list says), and
only enabled channels are returned, each once, in list order.

Repeated and test notices route like firing ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from digitalme.monitoring.notifiers.message import NotificationKind
from digitalme.monitoring.telemetry.items import Severity
from digitalme.settings import ChannelName, NotificationSettings, RoutingSettings

__all__ = ["Router", "enabled_channels"]


def enabled_channels(settings: NotificationSettings) -> list[ChannelName]:
    """The channels switched on in ``settings``."""
    switches = {
        ChannelName.EMAIL: settings.email.enabled,
        ChannelName.SLACK: settings.slack.enabled,
        ChannelName.SMS: settings.sms.enabled,
        ChannelName.WEBHOOK: settings.webhook.enabled,
    }
    return [channel for channel, enabled in switches.items() if enabled]


class Router:
    """Picks channels by severity, kind and rule, among the enabled ones."""

    def __init__(self, routing: RoutingSettings, enabled: Iterable[str]) -> None:
        self._routing = routing
        self._enabled = frozenset(enabled)
        self._by_severity: dict[Severity, Sequence[str]] = {
            Severity.CRITICAL: routing.critical,
            Severity.HIGH: routing.high,
            Severity.MEDIUM: routing.medium,
            Severity.LOW: routing.low,
        }

    @classmethod
    def from_settings(cls, settings: NotificationSettings) -> Router:
        """A router over the channels ``settings`` enables."""
        return cls(settings.routing, enabled_channels(settings))

    def channels(
        self,
        severity: Severity,
        kind: NotificationKind,
        rule_channels: Sequence[str] | None = None,
        *,
        fired_channels: Sequence[str] | None = None,
    ) -> list[str]:
        """The channels to notify, in order, each once.

        ``fired_channels`` are where the firing notice of the same alert went;
        they matter only for resolved notices with ``resolved_to_firing_channels``.
        """
        resolved = kind is NotificationKind.RESOLVED
        wanted: Sequence[str]
        if resolved and self._routing.resolved_to_firing_channels and fired_channels is not None:
            wanted = fired_channels
        elif rule_channels is not None:
            wanted = rule_channels
        elif resolved:
            wanted = self._routing.resolved
        else:
            wanted = self._by_severity[severity]
        chosen: list[str] = []
        for channel in wanted:
            if channel not in self._enabled or channel in chosen:
                continue
            if channel == ChannelName.SMS and severity is not Severity.CRITICAL:
                continue
            chosen.append(str(channel))
        return chosen
