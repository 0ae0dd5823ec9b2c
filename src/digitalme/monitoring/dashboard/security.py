"""Security figures over a time window: ``GET /api/metrics/security``.

Every figure is counted from recorded telemetry (the plan's
``GetSecurityMetricsAsync`` shape, none of its made-up numbers)::

    {"window": {"start": "...", "end": "..."}, "source": "store",
     "rate_limit_violations": {"count": 4, "unique_ips": 2},
     "threat_detections": {"SqlInjection": 2, "XssScript": 1, "CommandInjection": 0,
                           "PathTraversal": 0, "total": 3},
     "authentication_events": {
         "successful_logins": 2, "failed_logins": 4, "account_lockouts": 2,
         "unauthorized": {"UnauthorizedAccess": 3, "AuthenticationRequired": 1,
                          "TokenExpired": 0, "Forbidden": 1, "total": 5}},
     "api_key_usage": {"active_keys": 2, "requests_via_api_key": 3, "invalid_key_attempts": 2},
     "top_offending_ips": [{"ip": "203.0.113.5", "events": 4,
                            "types": {"RateLimit": 3, "SqlInjection": 1}}, ...],
     "recent_events": [{"event_type": "SqlInjection", "severity": "Critical",
                        "details": "...", "client_ip": "203.0.113.5", "at": ISO}, ...]}

Where the numbers come from:

* security events per type, rate-limit IPs and the top offending addresses: the
  stored security event items (``telemetry_security_events``), by their time, in
  ``[start, end)``, each count answered from a covering index (``ts``,
  ``client_ip``, ``event_type``, ``weight``) without reading rows, and each
  bounded (per type, the top addresses, and the types of those only), so a
  distributed attack from a million addresses never brings a million rows back.
  Whole hours are read from the retention job's counts per hour, address and
  type (``telemetry_security_hours``), the window's edges from the events: the
  same counts from one row per (hour, address, type) instead of one per event. Security
  events are never sampled (the client buffers them without asking the
  sampler), so their weights are 1 and the counts exact.
  ``account_lockouts`` counts ``AccountLockout`` events: the lock itself and each
  login attempt refused while the account is locked.
* successful logins, requests authenticated by an API key and refused API keys:
  the metrics the host records, ``auth.logins`` (dimension ``outcome``) and
  ``auth.requests`` (``method``, ``outcome``), exact (metrics are aggregated
  before sampling) with the resolution of their buckets: a 10 s bucket belongs to
  the window its start falls in. A refused API key is also an
  ``UnauthorizedAccess`` event; the metric tells it apart from a forged token
  without reading the event's text.
* active API keys: the host's ``api_keys`` figures (:mod:`.figures`); null when
  the host registered none or its source failed.
* ``recent_events``: the latest :data:`RECENT_EVENTS` stored security events in
  the window, newest first, every severity, their details as stored (redacted by
  the pipeline), in the live hub's ``SecurityEvent`` shape.

Without a telemetry store (``source: live``) the per-type counts and the metrics
come from the live aggregates (the last ``telemetry.live_window_seconds``), and
what needs single events, ``unique_ips``, ``top_offending_ips`` and
``recent_events``, is null.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from digitalme.monitoring.dashboard.figures import HostFigures
from digitalme.monitoring.dashboard.series import SeriesReader
from digitalme.monitoring.dashboard.timewindow import TimeWindow
from digitalme.monitoring.telemetry.items import ItemKind

__all__ = [
    "API_KEY_METHOD",
    "CREDENTIAL_METRIC",
    "LOGIN_METRIC",
    "RECENT_EVENTS",
    "SECURITY_EVENTS_METRIC",
    "THREAT_TYPES",
    "TOP_IPS",
    "UNAUTHORIZED_TYPES",
    "CredentialOutcome",
    "LoginOutcome",
    "SecurityReader",
]

SECURITY_EVENTS_METRIC = "Security.Events"  # one value per event, dimension EventType
LOGIN_METRIC = "auth.logins"
"""One value per login attempt the host answers, dimension ``outcome`` (:class:`LoginOutcome`)."""
CREDENTIAL_METRIC = "auth.requests"
"""One value per request that presents credentials, dimensions ``method`` (``token``
or ``api_key``) and ``outcome`` (:class:`CredentialOutcome`)."""
API_KEY_METHOD = "api_key"

RATE_LIMIT = "RateLimit"
LOGIN_FAILED = "LoginFailed"
ACCOUNT_LOCKOUT = "AccountLockout"
THREAT_TYPES: tuple[str, ...] = ("SqlInjection", "XssScript", "CommandInjection", "PathTraversal")
UNAUTHORIZED_TYPES: tuple[str, ...] = (
    "UnauthorizedAccess",  # forged, revoked or unknown credentials
    "AuthenticationRequired",  # none on a protected route
    "TokenExpired",
    "Forbidden",  # a valid identity without the role
)
TOP_IPS = 10
RECENT_EVENTS = 20
"""How many of the latest security events ``recent_events`` lists."""


class LoginOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # wrong email or password
    LOCKED = "locked"  # refused while the account is locked


class CredentialOutcome(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"


class SecurityReader:
    """Counts the security figures of a window from the store, else the live aggregates."""

    def __init__(self, reader: SeriesReader, figures: HostFigures | None = None) -> None:
        self.aggregator = reader.aggregator
        self.queries = reader.queries
        self.figures = figures

    async def read(self, window: TimeWindow) -> dict[str, Any]:
        """The route's JSON body for ``window``."""
        unique_ips: int | None
        top: list[dict[str, Any]] | None
        recent: list[dict[str, Any]] | None
        if self.queries is not None:
            by_type = await self._stored_types(window)
            unique_ips = await self.queries.count_distinct(
                ItemKind.SECURITY_EVENT,
                "client_ip",
                window.start,
                window.end,
                where={"event_type": RATE_LIMIT},
            )
            top = await self._top_ips(window)
            recent = await self._recent(window)
        else:
            by_type = self._live(SECURITY_EVENTS_METRIC, window, "EventType", {})
            unique_ips = top = recent = None
        logins = await self._metric(LOGIN_METRIC, window, "outcome", {})
        keys = await self._metric(CREDENTIAL_METRIC, window, "outcome", {"method": API_KEY_METHOD})
        unauthorized = {kind: by_type.get(kind, 0) for kind in UNAUTHORIZED_TYPES}
        threats = {kind: by_type.get(kind, 0) for kind in THREAT_TYPES}
        return {
            "window": {"start": window.start_at.isoformat(), "end": window.end_at.isoformat()},
            "source": "store" if self.queries is not None else "live",
            "rate_limit_violations": {
                "count": by_type.get(RATE_LIMIT, 0),
                "unique_ips": unique_ips,
            },
            "threat_detections": {**threats, "total": sum(threats.values())},
            "authentication_events": {
                "successful_logins": logins.get(LoginOutcome.SUCCEEDED, 0),
                "failed_logins": by_type.get(LOGIN_FAILED, 0),
                "account_lockouts": by_type.get(ACCOUNT_LOCKOUT, 0),
                "unauthorized": {**unauthorized, "total": sum(unauthorized.values())},
            },
            "api_key_usage": {
                "active_keys": await self._active_keys(),
                "requests_via_api_key": keys.get(CredentialOutcome.ACCEPTED, 0),
                "invalid_key_attempts": keys.get(CredentialOutcome.REFUSED, 0),
            },
            "top_offending_ips": top,
            "recent_events": recent,
        }

    async def _stored_types(self, window: TimeWindow) -> dict[str, int]:
        assert self.queries is not None
        rows = await self.queries.count_by(
            ItemKind.SECURITY_EVENT, ["event_type"], window.start, window.end
        )
        return {str(kind): _whole(count) for (kind,), count in rows}

    async def _top_ips(self, window: TimeWindow) -> list[dict[str, Any]]:
        """The addresses with the most security events, most first (events without one
        are left out: one more row is asked for in case NULL is among the top)."""
        assert self.queries is not None
        rows = await self.queries.count_by(
            ItemKind.SECURITY_EVENT, ["client_ip"], window.start, window.end, limit=TOP_IPS + 1
        )
        ranked = [(str(ip), _whole(count)) for (ip,), count in rows if ip is not None][:TOP_IPS]
        if not ranked:
            return []
        pairs = await self.queries.count_by(
            ItemKind.SECURITY_EVENT,
            ["client_ip", "event_type"],
            window.start,
            window.end,
            where={"client_ip": [ip for ip, _ in ranked]},
        )
        types: dict[str, dict[str, int]] = {ip: {} for ip, _ in ranked}
        for (ip, kind), count in pairs:  # largest first, so each "types" is too
            types[str(ip)][str(kind)] = _whole(count)
        return [{"ip": ip, "events": events, "types": types[ip]} for ip, events in ranked]

    async def _recent(self, window: TimeWindow) -> list[dict[str, Any]]:
        assert self.queries is not None
        rows = await self.queries.recent(
            ItemKind.SECURITY_EVENT, RECENT_EVENTS, since=window.start, until=window.end
        )
        return [
            {
                "event_type": row["event_type"],
                "severity": row["severity"],
                "details": row["details"],
                "client_ip": row["client_ip"],
                "at": datetime.fromtimestamp(row["ts"], UTC).isoformat(),
            }
            for row in rows
        ]

    async def _metric(
        self,
        name: str,
        window: TimeWindow,
        dimension: str,
        where: Mapping[str, str],
    ) -> dict[str, int]:
        """How many values ``name`` recorded in ``window``, per value of ``dimension``."""
        if self.queries is None:
            return self._live(name, window, dimension, where)
        groups = await self.queries.metric_window(
            name, window.start, window.end, where=where, group_by=[dimension], sketches=False
        )
        return {dims[dimension]: bucket.count for dims, bucket in groups}

    def _live(
        self,
        name: str,
        window: TimeWindow,
        dimension: str,
        where: Mapping[str, str],
    ) -> dict[str, int]:
        """As :meth:`_metric`, from the live buckets whose start is in ``window``."""
        counts: Counter[str] = Counter()
        for key, buckets in self.aggregator.live_buckets().items():
            if key.name != name:
                continue
            dims = key.dims()
            if any(dims.get(k) != v for k, v in where.items()):
                continue
            group = dims.get(dimension, "")
            for start, bucket in buckets.items():
                if window.start <= start < window.end:
                    counts[group] += bucket.count
        return dict(counts)

    async def _active_keys(self) -> int | None:
        if self.figures is None:
            return None
        found = await self.figures.read("api_keys")
        active = None if found is None else found.get("active")
        return None if active is None else int(active)


def _whole(count: float) -> int:
    """A weighted count as a whole number (weights of security events are always 1)."""
    return round(count)
