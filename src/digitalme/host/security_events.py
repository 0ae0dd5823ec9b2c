"""The host's security-events seam.

Every security-relevant thing the host notices (failed logins, lockouts, refused
credentials, rate-limit hits, detected threats) is reported here, once. Today
each event becomes one structured log line and is handed to the subscribed
listeners; the telemetry layer subscribes to it to record, count and alert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import structlog

log = structlog.get_logger("digitalme.security")


class SecurityEventType(StrEnum):
    """Event types; the first seven are the plan's, the rest name what the host adds."""

    RATE_LIMIT = "RateLimit"
    SQL_INJECTION = "SqlInjection"
    XSS_SCRIPT = "XssScript"
    COMMAND_INJECTION = "CommandInjection"
    PATH_TRAVERSAL = "PathTraversal"
    UNAUTHORIZED_ACCESS = "UnauthorizedAccess"  # forged or revoked credentials presented
    ACCOUNT_LOCKOUT = "AccountLockout"
    LOGIN_FAILED = "LoginFailed"
    AUTHENTICATION_REQUIRED = "AuthenticationRequired"  # no credentials on a protected route
    TOKEN_EXPIRED = "TokenExpired"
    FORBIDDEN = "Forbidden"  # valid identity, insufficient role or not the owner
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """One security event. ``details`` is a short description, never a secret or payload."""

    type: SecurityEventType
    details: str
    client_ip: str | None = None
    user_id: int | None = None
    path: str | None = None
    properties: dict[str, str] = field(default_factory=dict)


SecurityListener = Callable[[SecurityEvent], None]


class SecurityEvents:
    """Fan-out of security events to a log line and to subscribed listeners."""

    def __init__(self) -> None:
        self._listeners: list[SecurityListener] = []

    def subscribe(self, listener: SecurityListener) -> Callable[[], None]:
        """Add a listener; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, event: SecurityEvent) -> None:
        """Report an event. Never raises: a failing listener is logged and skipped."""
        log.warning(
            "security_event",
            event_type=str(event.type),
            details=event.details,
            client_ip=event.client_ip,
            user_id=event.user_id,
            path=event.path,
            **event.properties,
        )
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("security_listener_failed", listener=repr(listener))
