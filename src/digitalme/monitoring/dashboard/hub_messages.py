"""What the live hub sends: JSON objects with a ``type``, built from bus payloads.

Every message is a plain dict, serialised once per client by its sender.

- ``HealthUpdate`` (group ``health``): ``subject`` (a check's name or
  ``"overall"``), ``status``, ``previous`` (None when unknown), ``at`` (ISO
  8601), ``description`` and ``change`` (true for a change announced on the
  bus, false for the periodic reminder of the latest overall status).
- ``MetricsSnapshot`` (group ``metrics``): see :mod:`.hub_snapshot`.
- ``AlertFired`` / ``AlertResolved`` (group ``alerts``): ``alert``, the event's
  :meth:`~digitalme.monitoring.alerts.model.AlertEvent.to_dict`. ``repeated``
  events are not sent: the alert is already shown as firing, and the snapshot's
  ``active_alerts`` count is unchanged.
- ``SecurityEvent`` (group ``security``), High and Critical events only:
  ``event_type``, ``severity``, ``details`` (redacted here: the bus carries the
  raw text, the pipeline redacts only what it stores), ``client_ip``, ``at``.
- ``Backplane`` (no group: every client): ``connected`` (bool), ``since``
  (ISO 8601), ``instance``. Sent when the backplane (:mod:`.backplane`) is lost
  or back, and on ``Welcome`` while it is down: while ``connected`` is false,
  the hub shows only the events of ``instance``, the one the client is on.
- To one client: ``Welcome`` (``groups``, and ``instance`` when the hub has
  one), ``Joined`` / ``Left`` (``group``, ``groups``), ``Pong``, ``Dropped``
  (``count`` of messages lost while it did not read), ``Heartbeat`` (``at``)
  and ``Error`` (``message``).

**Instances.** A hub given an ``instance`` id adds ``"instance": <id>`` to the
messages it makes from its bus (``HealthUpdate`` with ``change`` true,
``AlertFired`` / ``AlertResolved``, ``SecurityEvent``) and to its
``MetricsSnapshot``. With a backplane, the first four (:data:`SHARED_TYPES`)
also reach the clients of every other instance, ``instance`` naming the one
they come from; snapshots, heartbeats, the periodic ``HealthUpdate`` reminder
and per-client messages stay on their instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from digitalme.monitoring.alerts.model import AlertEvent, AlertEventKind
from digitalme.monitoring.health.model import HealthStatus
from digitalme.monitoring.health.prober import OVERALL, HealthChange
from digitalme.monitoring.telemetry.items import SecurityEventItem, Severity
from digitalme.monitoring.telemetry.redaction import Redactor

__all__ = [
    "SHARED_TYPES",
    "Group",
    "Message",
    "alert_message",
    "backplane_state",
    "dropped",
    "error",
    "group_names",
    "group_of",
    "health_change",
    "health_status",
    "heartbeat",
    "security_message",
]

Message = dict[str, Any]


class Group(StrEnum):
    """What a client may join; one that joined nothing gets every group."""

    HEALTH = "health"
    METRICS = "metrics"
    ALERTS = "alerts"
    SECURITY = "security"


_GROUP_OF_TYPE = {
    "HealthUpdate": Group.HEALTH,
    "MetricsSnapshot": Group.METRICS,
    "AlertFired": Group.ALERTS,
    "AlertResolved": Group.ALERTS,
    "SecurityEvent": Group.SECURITY,
}

SHARED_TYPES = frozenset({"HealthUpdate", "AlertFired", "AlertResolved", "SecurityEvent"})
"""The types a backplane carries between instances (and the only ones it accepts)."""

_SENT_SEVERITIES = frozenset({Severity.HIGH, Severity.CRITICAL})


def group_of(message: Message) -> Group | None:
    """The group of a broadcast message; None for the messages every client gets."""
    return _GROUP_OF_TYPE.get(str(message.get("type")))


def _iso(at: datetime) -> str:
    return at.isoformat()


def health_change(change: HealthChange) -> Message:
    return {
        "type": "HealthUpdate",
        "subject": change.subject,
        "status": str(change.current),
        "previous": None if change.previous is None else str(change.previous),
        "at": _iso(change.at),
        "description": change.description,
        "change": True,
    }


def health_status(status: HealthStatus, at: datetime) -> Message:
    """The periodic reminder of the latest overall status."""
    return {
        "type": "HealthUpdate",
        "subject": OVERALL,
        "status": str(status),
        "previous": None,
        "at": _iso(at),
        "description": "",
        "change": False,
    }


def alert_message(event: AlertEvent) -> Message | None:
    """``AlertFired`` / ``AlertResolved``; None for ``repeated`` events."""
    if event.kind is AlertEventKind.FIRED:
        kind = "AlertFired"
    elif event.kind is AlertEventKind.RESOLVED:
        kind = "AlertResolved"
    else:
        return None
    return {"type": kind, "alert": event.to_dict()}


def security_message(item: SecurityEventItem, redactor: Redactor) -> Message | None:
    """A High or Critical security event with its details redacted; None for lower ones."""
    if item.severity not in _SENT_SEVERITIES:
        return None
    return {
        "type": "SecurityEvent",
        "event_type": item.event_type,
        "severity": str(item.severity),
        "details": redactor.redact_text(item.details),
        "client_ip": item.client_ip,
        "at": _iso(datetime.fromtimestamp(item.time, UTC)),
    }


def heartbeat(at: datetime) -> Message:
    return {"type": "Heartbeat", "at": _iso(at)}


def backplane_state(connected: bool, since: datetime, instance: str | None) -> Message:
    """Every client: whether this instance shares its hub messages with the others."""
    return {
        "type": "Backplane",
        "connected": connected,
        "since": _iso(since),
        "instance": instance,
    }


def dropped(count: int) -> Message:
    return {"type": "Dropped", "count": count}


def error(message: str) -> Message:
    return {"type": "Error", "message": message}


def group_names(groups: Iterable[Group]) -> list[str]:
    """Sorted names, for ``Welcome`` / ``Joined`` / ``Left``."""
    return sorted(str(g) for g in groups)
