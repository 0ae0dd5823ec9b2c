"""Alerts and alert events: the plan's ``Alert`` plus what a real engine needs.

An :class:`Alert` is one *instance* of a rule (one per group of labels) over
one episode: it is created pending (or straight away firing), fires, and is
resolved; a later breach of the same rule and group is a new alert with a new
``id`` but the same ``fingerprint``. An :class:`AlertEvent` is an immutable
record of something worth telling people (fired, resolved, repeated): each one
becomes one outbox delivery per target channel.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from digitalme.monitoring.telemetry.items import Severity

__all__ = [
    "MANUAL_RULE_ID",
    "SECURITY_RULE_ID",
    "Alert",
    "AlertCategory",
    "AlertEvent",
    "AlertEventKind",
    "AlertState",
    "Severity",
    "fingerprint_of",
    "new_id",
]

MANUAL_RULE_ID = "manual"
"""``rule_id`` of alerts sent by hand (the plan's SendAlertAsync)."""
SECURITY_RULE_ID = "security_event"
"""``rule_id`` of the immediate alerts raised from critical and high security events."""


class AlertCategory(StrEnum):
    PERFORMANCE = "Performance"
    SECURITY = "Security"
    AVAILABILITY = "Availability"
    ERROR = "Error"
    BUSINESS = "Business"


class AlertState(StrEnum):
    PENDING = "pending"  # breaching, waiting for the rule's min_duration
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertEventKind(StrEnum):
    FIRED = "fired"
    RESOLVED = "resolved"
    REPEATED = "repeated"  # still firing after the rule's repeat_interval


def new_id() -> str:
    return str(uuid.uuid4())


def fingerprint_of(rule_id: str, group: Mapping[str, str]) -> str:
    """Stable identity of a rule's instance: a hash of the rule id and sorted group labels."""
    canonical = json.dumps([rule_id, sorted(group.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(slots=True, kw_only=True)
class Alert:
    """One alert instance (mutable: the engine moves it through its states).

    ``labels`` identify it for silences and receivers (``alertname``,
    ``severity``, ``category``, the rule's static labels and its group labels).
    ``count`` is how many occurrences it groups: security events of one type
    from one source; 1 for rule and manual alerts. ``silenced`` is not stored:
    whoever shows the alert computes it against the current silences.
    """

    id: str = field(default_factory=new_id)
    rule_id: str
    fingerprint: str
    title: str
    description: str
    severity: Severity
    category: AlertCategory
    state: AlertState
    created_at: datetime
    starts_at: datetime | None = None  # when it started firing
    pending_since: datetime | None = None
    last_active_at: datetime | None = None  # last time the condition held (or an event came)
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    value: float | None = None
    threshold: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    affected_components: list[str] = field(default_factory=list)
    last_notified_at: datetime | None = None
    count: int = 1
    notified_channels: list[str] = field(default_factory=list)  # got the fired notice
    muted_until: datetime | None = None  # resolved by hand: no new alert of it before then
    updated_at: datetime | None = None
    silenced: bool = False

    @property
    def active(self) -> bool:
        return self.state is not AlertState.RESOLVED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601) for the API and the CLI."""
        return {
            "id": self.id,
            "rule_id": self.rule_id,
            "fingerprint": self.fingerprint,
            "title": self.title,
            "description": self.description,
            "severity": str(self.severity),
            "category": str(self.category),
            "state": str(self.state),
            "created_at": _iso(self.created_at),
            "starts_at": _iso(self.starts_at),
            "pending_since": _iso(self.pending_since),
            "last_active_at": _iso(self.last_active_at),
            "resolved_at": _iso(self.resolved_at),
            "resolved_by": self.resolved_by,
            "value": self.value,
            "threshold": self.threshold,
            "labels": dict(self.labels),
            "properties": dict(self.properties),
            "affected_components": list(self.affected_components),
            "last_notified_at": _iso(self.last_notified_at),
            "count": self.count,
            "notified_channels": list(self.notified_channels),
            "muted_until": _iso(self.muted_until),
            "updated_at": _iso(self.updated_at),
            "silenced": self.silenced,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent:
    """Something that happened to an alert, as it was then (immutable)."""

    id: str = field(default_factory=new_id)
    alert_id: str
    rule_id: str
    fingerprint: str
    kind: AlertEventKind
    at: datetime
    severity: Severity
    category: AlertCategory
    title: str
    description: str
    starts_at: datetime
    value: float | None = None
    threshold: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    properties: Mapping[str, Any] = field(default_factory=dict, hash=False)
    affected_components: tuple[str, ...] = ()
    resolved_by: str | None = None
    count: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "properties", MappingProxyType(dict(self.properties)))
        object.__setattr__(self, "affected_components", tuple(self.affected_components))

    @classmethod
    def of(
        cls, alert: Alert, kind: AlertEventKind, at: datetime, *, event_id: str | None = None
    ) -> AlertEvent:
        """The event ``kind`` of ``alert`` as it is now."""
        return cls(
            id=event_id or new_id(),
            alert_id=alert.id,
            rule_id=alert.rule_id,
            fingerprint=alert.fingerprint,
            kind=kind,
            at=at,
            severity=alert.severity,
            category=alert.category,
            title=alert.title,
            description=alert.description,
            starts_at=alert.starts_at or alert.created_at,
            value=alert.value,
            threshold=alert.threshold,
            labels=alert.labels,
            properties=alert.properties,
            affected_components=tuple(alert.affected_components),
            resolved_by=alert.resolved_by,
            count=alert.count,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "alert_id": self.alert_id,
            "rule_id": self.rule_id,
            "fingerprint": self.fingerprint,
            "kind": str(self.kind),
            "at": _iso(self.at),
            "severity": str(self.severity),
            "category": str(self.category),
            "title": self.title,
            "description": self.description,
            "starts_at": _iso(self.starts_at),
            "value": self.value,
            "threshold": self.threshold,
            "labels": dict(self.labels),
            "properties": dict(self.properties),
            "affected_components": list(self.affected_components),
            "resolved_by": self.resolved_by,
            "count": self.count,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
