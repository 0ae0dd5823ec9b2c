"""Where alerts live: the :class:`AlertStore` protocol and the records it keeps.

One :meth:`AlertStore.apply` is one transaction: the alert rows that changed,
their new events and one outbox delivery per event and target channel (see
:class:`AlertChanges`). The dispatcher reads the outbox through
:meth:`AlertStore.claim_due_deliveries` and reports back with
:meth:`~AlertStore.record_attempt` and ``mark_*``. Implementations:
:class:`~.memory.InMemoryAlertStore` (tests, no telemetry store) and
:class:`~.sql_store.SqlAlertStore` (the telemetry store's SQLite or PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from digitalme.monitoring.alerts.model import (
    Alert,
    AlertCategory,
    AlertEvent,
    AlertState,
    Severity,
)
from digitalme.monitoring.alerts.silences import Silence

__all__ = [
    "AlertChanges",
    "AlertDetail",
    "AlertQuery",
    "AlertStore",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryStatus",
    "NewDelivery",
    "StoredRule",
    "idempotency_key",
]

MAX_HISTORY = 10_000


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    SENDING = "sending"  # claimed by a dispatcher (the claim expires: a crash is retried)
    SENT = "sent"
    DEAD = "dead"  # refused for good, or out of attempts
    SUPPRESSED = "suppressed"  # silenced: recorded, never sent


def idempotency_key(event_id: str, channel: str) -> str:
    """The key a delivery is sent under, the same on every retry (unique in the outbox)."""
    return f"{event_id}:{channel}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NewDelivery:
    """An outbox row to create with the event it belongs to."""

    event_id: str
    alert_id: str
    channel: str
    status: DeliveryStatus
    created_at: datetime
    payload: Mapping[str, Any]

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.event_id, self.channel)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """An outbox row as stored."""

    id: int
    event_id: str
    alert_id: str
    channel: str
    idempotency_key: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    payload: Mapping[str, Any]
    last_error: str | None = None
    sent_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "alert_id": self.alert_id,
            "channel": self.channel,
            "idempotency_key": self.idempotency_key,
            "status": str(self.status),
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "created_at": self.created_at.isoformat(),
            "last_error": self.last_error,
            "sent_at": None if self.sent_at is None else self.sent_at.isoformat(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryAttempt:
    """One try at sending a delivery (``outcome``: sent, retry, dead, ...)."""

    delivery_id: int
    at: datetime
    outcome: str
    latency_ms: float | None = None
    detail: str = ""


@dataclass(slots=True)
class AlertChanges:
    """What one transaction writes: alert rows (whole snapshots), cancelled pending alerts,
    new events and their deliveries."""

    alerts: list[Alert] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # ids of pending alerts that never fired
    events: list[AlertEvent] = field(default_factory=list)
    deliveries: list[NewDelivery] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.alerts or self.removed or self.events or self.deliveries)

    def extend(self, other: AlertChanges) -> None:
        self.alerts.extend(other.alerts)
        self.removed.extend(other.removed)
        self.events.extend(other.events)
        self.deliveries.extend(other.deliveries)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertQuery:
    """Filters of :meth:`AlertStore.history` (newest first)."""

    rule_id: str | None = None
    state: AlertState | None = None
    severity: Severity | None = None
    category: AlertCategory | None = None
    fingerprint: str | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    limit: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_HISTORY:
            raise ValueError(f"limit must be between 1 and {MAX_HISTORY}")


@dataclass(frozen=True, slots=True)
class AlertDetail:
    """One alert with its events (oldest first), deliveries and their attempts."""

    alert: Alert
    events: list[AlertEvent]
    deliveries: list[Delivery]
    attempts: list[DeliveryAttempt]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRule:
    """A rule created or changed through the API (``definition`` is the rule's JSON)."""

    id: str
    definition: Mapping[str, Any]
    enabled: bool
    updated_at: datetime
    updated_by: str | None = None


class AlertStore(Protocol):
    """Durable alert state, history, silences, API rules and the delivery outbox."""

    async def load_active(self) -> list[Alert]:
        """Pending and firing alerts, and resolved ones still muted (``muted_until`` set)."""
        ...

    async def apply(self, changes: AlertChanges) -> None:
        """Write ``changes`` in one transaction (idempotent: a retried commit adds nothing)."""
        ...

    async def history(self, query: AlertQuery) -> list[Alert]: ...

    async def get(self, alert_id: str) -> AlertDetail | None: ...

    async def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        """Every silence, or those active at ``active_at``."""
        ...

    async def save_silence(self, silence: Silence) -> None: ...

    async def delete_silence(self, silence_id: str) -> bool: ...

    async def list_rules(self) -> list[StoredRule]: ...

    async def save_rule(self, rule: StoredRule) -> None: ...

    async def delete_rule(self, rule_id: str) -> bool: ...

    async def claim_due_deliveries(
        self, now: datetime, limit: int, *, lease: float = 60.0
    ) -> list[Delivery]:
        """Claim up to ``limit`` deliveries due at ``now`` (oldest first): they become
        ``sending`` for ``lease`` seconds, after which an unfinished claim is due again."""
        ...

    async def record_attempt(self, attempt: DeliveryAttempt) -> None: ...

    async def mark_sent(self, delivery_id: int, at: datetime) -> None: ...

    async def mark_retry(self, delivery_id: int, next_attempt_at: datetime, error: str) -> None: ...

    async def mark_dead(self, delivery_id: int, reason: str, at: datetime) -> None: ...

    async def deliveries(self, *, alert_id: str | None = None) -> list[Delivery]:
        """Deliveries (of one alert), oldest first."""
        ...


def snapshot(alert: Alert) -> Alert:
    """A copy that later changes to ``alert`` do not reach (what a change set holds)."""
    from dataclasses import replace

    return replace(
        alert,
        labels=dict(alert.labels),
        properties=dict(alert.properties),
        affected_components=list(alert.affected_components),
        notified_channels=list(alert.notified_channels),
    )


def sorted_events(events: Sequence[AlertEvent]) -> list[AlertEvent]:
    return sorted(events, key=lambda event: event.at)
