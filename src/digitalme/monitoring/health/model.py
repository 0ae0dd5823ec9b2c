"""What a health check is and what it answers: the protocol, statuses, results and reports."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, Self, runtime_checkable

from digitalme.monitoring.errors import MonitoringError

__all__ = [
    "CheckFailed",
    "HealthCheck",
    "HealthEntry",
    "HealthReport",
    "HealthResult",
    "HealthStatus",
    "SupportsAclose",
    "worst",
]

JsonValue = str | int | float | bool | None
"""What a result's ``data`` may hold: plain JSON scalars, so every report serialises."""


class HealthStatus(StrEnum):
    """A check's verdict, best first. Degraded still serves; Unhealthy does not."""

    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    UNHEALTHY = "Unhealthy"

    @property
    def score(self) -> float:
        """1 Healthy, 0.5 Degraded, 0 Unhealthy: the value recorded as a metric."""
        return _SCORES[self]


_SCORES = {HealthStatus.HEALTHY: 1.0, HealthStatus.DEGRADED: 0.5, HealthStatus.UNHEALTHY: 0.0}
_RANK = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}


def worst(statuses: Iterable[HealthStatus]) -> HealthStatus:
    """The worst of ``statuses``; Healthy when there are none."""
    return max(statuses, key=_RANK.__getitem__, default=HealthStatus.HEALTHY)


def _frozen(data: Mapping[str, JsonValue] | None) -> Mapping[str, JsonValue]:
    return MappingProxyType(dict(data or {}))


@dataclass(frozen=True, slots=True)
class HealthResult:
    """What one run of a check found.

    ``description`` is a short sentence of ours; ``data`` holds figures (shown to
    admins only); ``error`` is the (redacted) text of what went wrong, if anything;
    ``duration`` is in seconds and is filled in by the runner.
    """

    status: HealthStatus
    description: str = ""
    # Left out of the hash (a mapping has none); equality still compares it.
    data: Mapping[str, JsonValue] = field(default_factory=lambda: _frozen(None), hash=False)
    error: str | None = None
    duration: float = 0.0

    @classmethod
    def healthy(cls, description: str = "", data: Mapping[str, JsonValue] | None = None) -> Self:
        return cls(HealthStatus.HEALTHY, description, _frozen(data))

    @classmethod
    def degraded(
        cls,
        description: str = "",
        data: Mapping[str, JsonValue] | None = None,
        error: str | None = None,
    ) -> Self:
        return cls(HealthStatus.DEGRADED, description, _frozen(data), error)

    @classmethod
    def unhealthy(
        cls,
        description: str = "",
        data: Mapping[str, JsonValue] | None = None,
        error: str | None = None,
    ) -> Self:
        return cls(HealthStatus.UNHEALTHY, description, _frozen(data), error)


class HealthCheck(Protocol):
    """One thing to check. ``check`` returns a result or raises.

    Raising (anything, or :class:`CheckFailed` for a better description) counts as
    the failure status the check was registered with; so does running over its
    timeout. A check never needs to catch its own errors to stay safe.
    """

    @property
    def name(self) -> str:
        """The check's name in reports (``database``, ``redis``, ...)."""
        ...

    async def check(self) -> HealthResult:
        """Look at the dependency once and say how it is."""
        ...


@runtime_checkable
class SupportsAclose(Protocol):
    """A check that holds connections; the registry closes it on shutdown."""

    async def aclose(self) -> None: ...


class CheckFailed(MonitoringError):
    """Raised by a check to fail with its own description and data.

    The status is still the registration's failure status; the error text shown
    (redacted) is the one of the exception this was raised from, if any.
    """

    def __init__(self, description: str, data: Mapping[str, JsonValue] | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.data = _frozen(data)


@dataclass(frozen=True, slots=True)
class HealthEntry:
    """One check's latest result in a report, with when it was taken (UTC)."""

    name: str
    result: HealthResult
    tags: frozenset[str]
    checked_at: datetime

    @property
    def status(self) -> HealthStatus:
        return self.result.status


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The entries of one request for health, and their overall (worst) status.

    ``total_duration`` is the duration of the slowest entry: the checks run
    concurrently, so that is what running them all costs.
    """

    entries: tuple[HealthEntry, ...]
    timestamp: datetime

    @property
    def status(self) -> HealthStatus:
        return worst(entry.status for entry in self.entries)

    @property
    def total_duration(self) -> float:
        return max((entry.result.duration for entry in self.entries), default=0.0)
