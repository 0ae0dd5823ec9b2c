"""One object for a service's health: the registry, the cached runner and the prober."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import BaseRoute

from digitalme.monitoring.bus import EventBus
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.health.endpoints import Authorize, health_routes
from digitalme.monitoring.health.model import HealthCheck, HealthReport, HealthStatus
from digitalme.monitoring.health.prober import HealthProber
from digitalme.monitoring.health.registry import EXTERNAL, HealthRegistration, HealthRegistry
from digitalme.monitoring.health.runner import HealthRunner
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.redaction import Redactor
from digitalme.settings import HealthSettings

__all__ = ["HealthMonitor"]


class HealthMonitor:
    """Registers checks, answers for health (cached, single-flight) and probes in the background.

    ``start`` starts the prober (unless ``settings.prober_enabled`` is off);
    ``stop`` stops it, cancels runs in flight and closes the checks' own
    connections (they reopen if the monitor is started again).
    """

    def __init__(
        self,
        settings: HealthSettings,
        *,
        clock: Clock,
        redactor: Redactor,
        telemetry: TelemetryClient | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.registry = HealthRegistry()
        self.runner = HealthRunner(
            self.registry, clock=clock, redactor=redactor, cache_seconds=settings.cache_seconds
        )
        self.prober = HealthProber(
            self.runner,
            interval=settings.probe_interval,
            clock=clock,
            telemetry=telemetry,
            bus=bus,
            history_size=settings.history_size,
        )

    def add(
        self,
        check: HealthCheck,
        *,
        failure_status: HealthStatus = HealthStatus.UNHEALTHY,
        timeout: float | None = None,
        tags: Iterable[str] = (),
        min_interval: float = 0.0,
    ) -> HealthRegistration:
        """Register ``check``; ``timeout`` defaults to ``health.check_timeout``."""
        return self.registry.add(
            check,
            failure_status=failure_status,
            timeout=self.settings.check_timeout if timeout is None else timeout,
            tags=tags,
            min_interval=min_interval,
        )

    async def report(self, *, ready: bool = False, max_age: float | None = None) -> HealthReport:
        """Every check's result (without the ``external`` ones when ``ready``), at most
        ``max_age`` seconds old (default ``health.cache_seconds``)."""
        exclude = frozenset({EXTERNAL}) if ready else frozenset()
        return await self.runner.report(exclude_tags=exclude, max_age=max_age)

    def routes(self, authorize: Authorize) -> list[BaseRoute]:
        """``/health``, ``/health/ready`` and ``/health/live``; see :mod:`.endpoints`."""
        return health_routes(
            self.runner,
            clock=self.clock,
            authorize=authorize,
            show_details=self.settings.show_details,
        )

    def start(self) -> None:
        if self.settings.prober_enabled:
            self.prober.start()

    async def stop(self) -> None:
        await self.prober.stop()
        await self.runner.aclose()
        await self.registry.aclose()
