"""What uptime is made of: heartbeats, the states time is counted in, and incidents."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from digitalme.monitoring.health.model import HealthStatus

__all__ = [
    "BUDGET_METRIC",
    "BURN_RATE_METRIC",
    "OVERALL",
    "BeatStatus",
    "Heartbeat",
    "Incident",
    "Source",
    "TimeState",
]

BURN_RATE_METRIC = "Uptime.SLO.BurnRate"
"""The SLO tracker's burn rate per tier (dimension ``tier``), read by the burn-rate rules."""
BUDGET_METRIC = "Uptime.SLO.BudgetRemaining"
"""The share of the error budget left (1 = untouched, below 0 = overspent)."""
OVERALL = "overall"
"""The component that stands for the whole service (the worst of every check)."""


class Source(StrEnum):
    """Who recorded a heartbeat: the service's own prober, or a watcher outside it."""

    INSIDE = "inside"
    OUTSIDE = "outside"


class BeatStatus(StrEnum):
    """A heartbeat's verdict. Degraded still serves, so it counts as up."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"

    @classmethod
    def of(cls, status: HealthStatus) -> BeatStatus:
        return _FROM_HEALTH[status]


_FROM_HEALTH = {
    HealthStatus.HEALTHY: BeatStatus.UP,
    HealthStatus.DEGRADED: BeatStatus.DEGRADED,
    HealthStatus.UNHEALTHY: BeatStatus.DOWN,
}


class TimeState(StrEnum):
    """What a stretch of time counts as. Unknown: no heartbeat covered it."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"
    MAINTENANCE = "maintenance"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One probe of one component at ``at`` (epoch seconds).

    ``interval`` is the prober's interval when it was taken (the time a heartbeat
    may cover); ``failing`` names the checks that were not healthy; ``message`` is
    a short redacted description, for admins only.
    """

    component: str
    source: Source
    at: float
    status: BeatStatus
    interval: float
    duration_ms: float | None = None
    failing: tuple[str, ...] = ()
    message: str = ""


@dataclass(slots=True)
class Incident:
    """A stretch of down (or unknown, when unknown counts as down) time of one component."""

    id: str
    component: str
    source: Source
    cause: str  # "down" or "unknown"
    started_at: float
    ended_at: float | None = None
    failing: list[str] = field(default_factory=list)
    description: str = ""

    @property
    def open(self) -> bool:
        return self.ended_at is None

    def duration(self, now: float) -> float:
        return (now if self.ended_at is None else self.ended_at) - self.started_at
