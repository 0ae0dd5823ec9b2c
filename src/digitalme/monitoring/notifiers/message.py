"""What a channel is asked to deliver: one notice about one alert event.

The dispatcher builds a :class:`Notification` from an alert event and hands the
same object to every channel it routes to; each channel renders it in its own
format. The helpers here hold what all human-readable formats share (the
headline and the list of facts), so email, Slack and SMS say the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType

from digitalme.monitoring.telemetry.items import Severity

__all__ = ["MAX_KEY_LENGTH", "Notification", "NotificationKind", "facts", "format_time", "headline"]

MAX_KEY_LENGTH = 255


class NotificationKind(StrEnum):
    """Why a notification is sent."""

    FIRED = "fired"
    RESOLVED = "resolved"
    REPEATED = "repeated"  # still firing after the rule's repeat interval
    TEST = "test"  # POST /api/notifications/test


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """One notice about one alert event, as every channel receives it.

    ``key`` is the idempotency key: unique per delivery of an alert event, and
    the same on every retry of it. Times are UTC-aware. ``count`` says how many
    events are folded into this one (a burst of security events is one alert).
    """

    key: str
    kind: NotificationKind
    alert_id: str
    fingerprint: str
    title: str
    description: str
    severity: Severity
    category: str
    starts_at: datetime
    ends_at: datetime | None = None
    value: float | None = None
    threshold: float | None = None
    # Mappings are copied into read-only views; they take no part in the hash.
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    properties: Mapping[str, str] = field(default_factory=dict, hash=False)
    affected_components: tuple[str, ...] = ()
    rule_id: str | None = None
    resolved_by: str | None = None
    count: int = 1
    dashboard_url: str | None = None

    def __post_init__(self) -> None:
        # The key travels in headers (Idempotency-Key), so printable ASCII only.
        if not (
            0 < len(self.key) <= MAX_KEY_LENGTH and self.key.isascii() and self.key.isprintable()
        ):
            raise ValueError(f"key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
        for name in ("starts_at", "ends_at"):
            moment = getattr(self, name)
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware")
        if self.count < 1:
            raise ValueError("count must be at least 1")
        object.__setattr__(self, "labels", _frozen(self.labels))
        object.__setattr__(self, "properties", _frozen(self.properties))
        object.__setattr__(self, "affected_components", tuple(self.affected_components))

    @property
    def resolved(self) -> bool:
        return self.kind is NotificationKind.RESOLVED


def format_time(moment: datetime) -> str:
    """``2026-01-01 12:00:00 UTC``: the plan's format, in UTC whatever the zone given."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def headline(notification: Notification) -> str:
    """The one-line summary: ``[Critical] title``, ``[RESOLVED] title``, ``[TEST] title``."""
    title = " ".join(notification.title.split())  # no line breaks in subjects and SMS
    match notification.kind:
        case NotificationKind.RESOLVED:
            return f"[RESOLVED] {title}"
        case NotificationKind.TEST:
            return f"[TEST] {title}"
        case NotificationKind.REPEATED:
            return f"[{notification.severity}] {title} (still firing)"
        case _:
            return f"[{notification.severity}] {title}"


def _number(value: float) -> str:
    return f"{value:.6g}"


def facts(notification: Notification) -> list[tuple[str, str]]:
    """The labelled facts every human-readable channel shows, in display order.

    The plan's four (Description, Severity, Category, Time) come first; the rest
    appear only when they say something.
    """
    rows = [
        ("Description", notification.description),
        ("Severity", str(notification.severity)),
        ("Category", notification.category),
        ("Time", format_time(notification.starts_at)),
    ]
    if notification.value is not None:
        rows.append(("Value", _number(notification.value)))
    if notification.threshold is not None:
        rows.append(("Threshold", _number(notification.threshold)))
    if notification.count > 1:
        rows.append(("Events", f"{notification.count:,}"))
    if notification.affected_components:
        rows.append(("Components", ", ".join(notification.affected_components)))
    if notification.ends_at is not None:
        rows.append(("Resolved at", format_time(notification.ends_at)))
    if notification.resolved_by:
        rows.append(("Resolved by", notification.resolved_by))
    if notification.rule_id:
        rows.append(("Rule", notification.rule_id))
    rows.append(("Alert", notification.alert_id))
    return rows
