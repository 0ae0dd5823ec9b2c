"""Telemetry items: what the request path captures, before enrichment and redaction.

Items are plain slotted objects built on the request path, so they hold raw
values and a reference to the request's :class:`~.context.TelemetryContext`;
everything costly (enrichment, redaction, serialisation) happens off the path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from digitalme.monitoring.telemetry.context import TelemetryContext


class ItemKind(StrEnum):
    REQUEST = "request"
    DEPENDENCY = "dependency"
    EXCEPTION = "exception"
    EVENT = "event"
    SECURITY_EVENT = "security_event"


class Priority(IntEnum):
    """Which items a full buffer drops first (lowest first)."""

    LOW = 0  # custom events
    NORMAL = 1  # requests, dependencies
    HIGH = 2  # exceptions and security events: never sampled out, dropped last


class Severity(StrEnum):
    """The plan's severities for security events (and later alerts)."""

    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"
    CRITICAL = "Critical"


@dataclass(slots=True, kw_only=True)
class Item:
    """Fields shared by every item. ``time`` is epoch seconds (UTC)."""

    time: float
    context: TelemetryContext | None = None
    properties: dict[str, object] = field(default_factory=dict)
    weight: float = 1.0  # how many real items this one stands for after sampling

    kind: ItemKind = ItemKind.EVENT
    priority: Priority = Priority.NORMAL

    @property
    def operation_id(self) -> str | None:
        return self.context.trace_id if self.context is not None else None


@dataclass(slots=True, kw_only=True)
class RequestItem(Item):
    name: str  # the route template, "GET /api/personality/{profile_id}"
    duration_ms: float
    status_code: int
    success: bool
    kind: ItemKind = ItemKind.REQUEST


@dataclass(slots=True, kw_only=True)
class DependencyItem(Item):
    type: str  # "HTTP", "SQL", "Redis"
    target: str  # host:port, database name
    name: str  # "POST /v1/messages", "SELECT users"
    data: str  # the command or URL, redacted off the path
    duration_ms: float
    success: bool
    result_code: str = ""
    kind: ItemKind = ItemKind.DEPENDENCY


@dataclass(slots=True, kw_only=True)
class ExceptionItem(Item):
    type: str
    message: str
    stack: str = ""
    severity: Severity = Severity.HIGH
    kind: ItemKind = ItemKind.EXCEPTION
    priority: Priority = Priority.HIGH


@dataclass(slots=True, kw_only=True)
class EventItem(Item):
    name: str
    measurements: dict[str, float] = field(default_factory=dict)
    kind: ItemKind = ItemKind.EVENT
    priority: Priority = Priority.LOW


@dataclass(slots=True, kw_only=True)
class SecurityEventItem(Item):
    event_type: str  # "RateLimit", "SqlInjection", ...
    severity: Severity
    details: str
    client_ip: str | None = None
    user_id: str | None = None
    kind: ItemKind = ItemKind.SECURITY_EVENT
    priority: Priority = Priority.HIGH


AnyItem = RequestItem | DependencyItem | ExceptionItem | EventItem | SecurityEventItem
