"""The registry of health checks: each with a name, a failure status, a timeout and tags."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import structlog

from digitalme.monitoring.errors import MonitoringError
from digitalme.monitoring.health.model import HealthCheck, HealthStatus, SupportsAclose

__all__ = ["EXTERNAL", "READY", "DuplicateCheck", "HealthRegistration", "HealthRegistry"]

EXTERNAL = "external"
"""The tag of checks on things outside this service; ``/health/ready`` leaves them out."""
READY = "ready"
"""The tag of the built-in checks of this service's own dependencies. Informational:
``/health/ready`` runs every check that is not tagged ``external``."""

log = structlog.get_logger("digitalme.monitoring.health")


class DuplicateCheck(MonitoringError):
    """A check with this name is already registered."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a health check named {name!r} is already registered")
        self.name = name


@dataclass(frozen=True, slots=True)
class HealthRegistration:
    """A check and how to run it.

    ``failure_status`` is what a raise or a timeout counts as; ``timeout`` is in
    seconds; ``min_interval`` (seconds) makes the check run at most that often,
    its last result being reused in between (for paid or rate-limited upstreams).
    """

    check: HealthCheck
    failure_status: HealthStatus
    timeout: float
    tags: frozenset[str]
    min_interval: float = 0.0

    @property
    def name(self) -> str:
        return self.check.name


class HealthRegistry:
    """The checks of one service, in registration order."""

    def __init__(self) -> None:
        self._registrations: dict[str, HealthRegistration] = {}

    def add(
        self,
        check: HealthCheck,
        *,
        failure_status: HealthStatus = HealthStatus.UNHEALTHY,
        timeout: float,
        tags: Iterable[str] = (),
        min_interval: float = 0.0,
    ) -> HealthRegistration:
        """Register ``check``; raises :class:`DuplicateCheck` if its name is taken."""
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not (math.isfinite(min_interval) and min_interval >= 0):
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval!r}")
        name = check.name
        if name in self._registrations:
            raise DuplicateCheck(name)
        registration = HealthRegistration(
            check, failure_status, float(timeout), frozenset(tags), float(min_interval)
        )
        self._registrations[name] = registration
        return registration

    def __iter__(self) -> Iterator[HealthRegistration]:
        return iter(tuple(self._registrations.values()))

    def __len__(self) -> int:
        return len(self._registrations)

    def __contains__(self, name: object) -> bool:
        return name in self._registrations

    def names(self) -> list[str]:
        return list(self._registrations)

    def selected(self, exclude_tags: frozenset[str] = frozenset()) -> list[HealthRegistration]:
        """The registrations carrying none of ``exclude_tags``."""
        return [r for r in self._registrations.values() if not r.tags & exclude_tags]

    async def aclose(self) -> None:
        """Close the checks that hold connections; one failing does not stop the others."""
        for registration in self._registrations.values():
            check = registration.check
            if isinstance(check, SupportsAclose):
                try:
                    await check.aclose()
                except Exception:
                    log.exception("health_check_close_failed", check=registration.name)
