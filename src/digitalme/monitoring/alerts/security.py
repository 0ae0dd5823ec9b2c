"""Immediate alerts from security events, grouped by event type and source.

The telemetry client publishes every security event on ``security.event`` and
the critical types (SqlInjection, CommandInjection, UnauthorizedAccess) also on
``security.critical``. The engine takes critical types from the second topic
and the others from the first, so each event counts once:

* a critical type raises a **Critical** Security alert, a type whose severity
  is High (XssScript, PathTraversal) a **High** one; lower severities raise
  nothing here (rules such as ``rate_limit_spike`` cover them);
* events of one type from one source (client IP) within
  ``alerting.security_group_window`` are one alert whose ``count`` grows: a
  burst of 10,000 attempts is one fired notification, then at most one
  ``repeated`` notice (with the count) per ``alerting.security_repeat_interval``
  while it goes on; the alert resolves once the source has been quiet for the
  group window.
"""

from __future__ import annotations

from dataclasses import dataclass

from digitalme.monitoring.alerts.model import SECURITY_RULE_ID, AlertCategory, fingerprint_of
from digitalme.monitoring.telemetry.client import (
    CRITICAL_SECURITY_TOPIC,
    CRITICAL_SECURITY_TYPES,
    SECURITY_TOPIC,
)
from digitalme.monitoring.telemetry.items import SecurityEventItem, Severity

__all__ = ["SECURITY_TOPICS", "SecurityGroup", "security_group"]

SECURITY_TOPICS = (SECURITY_TOPIC, CRITICAL_SECURITY_TOPIC)
MAX_DETAILS = 500
UNKNOWN_SOURCE = "unknown"


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    """Which alert a security event belongs to."""

    fingerprint: str
    severity: Severity
    event_type: str
    source: str

    @property
    def labels(self) -> dict[str, str]:
        return {
            "alertname": SECURITY_RULE_ID,
            "severity": str(self.severity),
            "category": str(AlertCategory.SECURITY),
            "event_type": self.event_type,
            "source": self.source,
        }

    def title(self) -> str:
        return f"{self.event_type} from {self.source}"

    def description(self, count: int, details: str) -> str:
        what = "1 security event" if count == 1 else f"{count:,} security events"
        text = f"{what} of type {self.event_type} from {self.source}"
        return f"{text}; latest: {details}" if details else text


def security_group(topic: str, payload: object) -> SecurityGroup | None:
    """The group of a bus message, or None when it raises no alert (or is the other topic's)."""
    if not isinstance(payload, SecurityEventItem):
        return None
    event_type = payload.event_type
    critical = event_type in CRITICAL_SECURITY_TYPES
    if critical != (topic == CRITICAL_SECURITY_TOPIC):
        return None  # counted from its other topic
    if critical:
        severity = Severity.CRITICAL
    elif payload.severity in (Severity.HIGH, Severity.CRITICAL):
        severity = Severity.HIGH
    else:
        return None
    source = (payload.client_ip or UNKNOWN_SOURCE)[:64]
    event_type = event_type[:100]
    fingerprint = fingerprint_of(SECURITY_RULE_ID, {"event_type": event_type, "source": source})
    return SecurityGroup(fingerprint, severity, event_type, source)


def details_of(payload: SecurityEventItem) -> str:
    return " ".join(str(payload.details).split())[:MAX_DETAILS]
