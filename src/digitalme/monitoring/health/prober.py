"""The background prober: runs every check on an interval, records it, announces changes.

Each round asks the :class:`~digitalme.monitoring.health.runner.HealthRunner`
for fresh results (so it also refreshes what the endpoints serve; a run already
in flight is joined, and a check's ``min_interval`` is honoured), then

* records ``System.Health.Overall`` and, per check (dimension ``check``),
  ``System.Health.Check.Available`` (both 1 Healthy, 0.5 Degraded, 0 Unhealthy)
  and ``System.Health.Check.Duration`` (ms, once per run of the check);
* compares each status, and the overall one, with the previous round: every
  change goes into a bounded history, onto the bus (topic ``health.changed``,
  payload :class:`HealthChange`), into telemetry as a
  ``System.Health.StatusChanged`` event, and into the log.

and then hands the report to each listener (:meth:`HealthProber.add_listener`; the
uptime recorder turns it into heartbeats).

A round that fails for any reason is logged and counted in :attr:`HealthProber.errors`;
the loop carries on. :meth:`HealthProber.stop` cancels a round in progress.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from digitalme.monitoring.bus import EventBus
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.health.model import HealthReport, HealthStatus
from digitalme.monitoring.health.runner import HealthRunner
from digitalme.monitoring.telemetry.client import TelemetryClient

__all__ = [
    "AVAILABLE_METRIC",
    "DURATION_METRIC",
    "HEALTH_CHANGED_TOPIC",
    "OVERALL",
    "OVERALL_METRIC",
    "STATUS_CHANGED_EVENT",
    "HealthChange",
    "HealthProber",
]

HEALTH_CHANGED_TOPIC = "health.changed"
OVERALL = "overall"
"""The subject of changes of the overall status."""
OVERALL_METRIC = "System.Health.Overall"
AVAILABLE_METRIC = "System.Health.Check.Available"
DURATION_METRIC = "System.Health.Check.Duration"
STATUS_CHANGED_EVENT = "System.Health.StatusChanged"

log = structlog.get_logger("digitalme.monitoring.health")


@dataclass(frozen=True, slots=True)
class HealthChange:
    """A status change of one check (``subject`` is its name) or of the overall status
    (``subject`` is ``"overall"``). ``previous`` is None for the first round after start."""

    subject: str
    previous: HealthStatus | None
    current: HealthStatus
    at: datetime
    description: str


class HealthProber:
    """Probes every ``interval`` seconds between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        runner: HealthRunner,
        *,
        interval: float,
        clock: Clock,
        telemetry: TelemetryClient | None = None,
        bus: EventBus | None = None,
        history_size: int = 1000,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.interval = float(interval)
        self._runner = runner
        self._clock = clock
        self._telemetry = telemetry
        self._bus = bus
        self._history: deque[HealthChange] = deque(maxlen=history_size)
        self._statuses: dict[str, HealthStatus] = {}
        self._recorded: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[HealthReport], Awaitable[object]]] = []
        self.rounds = 0
        self.errors = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def history(self, subject: str | None = None) -> list[HealthChange]:
        """The remembered changes, oldest first; only ``subject``'s when given."""
        return [c for c in self._history if subject is None or c.subject == subject]

    def status(self, subject: str = OVERALL) -> HealthStatus | None:
        """The status of ``subject`` in the latest round (None before the first)."""
        return self._statuses.get(subject)

    def add_listener(self, listener: Callable[[HealthReport], Awaitable[object]]) -> None:
        """Await ``listener(report)`` after every round (its errors are logged and counted)."""
        self._listeners.append(listener)

    async def probe(self) -> HealthReport:
        """One round: fresh results, recorded and compared with the previous round."""
        report = await self._runner.report(max_age=0.0)
        self.rounds += 1
        self._record(report)
        self._compare(report)
        for listener in self._listeners:
            try:
                await listener(report)
            except Exception:
                self.errors += 1
                log.exception("health_listener_failed")
        return report

    def start(self) -> None:
        """Probe now, then every ``interval`` seconds, in a task of its own."""
        if self.running:
            return
        self._task = asyncio.create_task(self._loop(), name="health-prober")

    async def stop(self) -> None:
        """Cancel the loop (and a round in progress) and wait for it to end."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task})

    async def _loop(self) -> None:
        while True:
            try:
                await self.probe()
            except Exception:
                self.errors += 1
                log.exception("health_probe_failed")
            await asyncio.sleep(self.interval)

    def _record(self, report: HealthReport) -> None:
        telemetry = self._telemetry
        if telemetry is None:
            return
        telemetry.track_metric(OVERALL_METRIC, report.status.score)
        for entry in report.entries:
            dimensions = {"check": entry.name}
            telemetry.track_metric(AVAILABLE_METRIC, entry.status.score, dimensions)
            # A result reused from an earlier run (min_interval) was timed already.
            if self._recorded.get(entry.name) != entry.checked_at:
                self._recorded[entry.name] = entry.checked_at
                telemetry.track_metric(DURATION_METRIC, entry.result.duration * 1000.0, dimensions)

    def _compare(self, report: HealthReport) -> None:
        at = report.timestamp
        for entry in report.entries:
            self._change(entry.name, entry.status, at, entry.result.description, entry.result.error)
        overall = report.status
        failing = [
            entry.name for entry in report.entries if entry.status is not HealthStatus.HEALTHY
        ]
        summary = "all checks healthy" if not failing else "not healthy: " + ", ".join(failing)
        self._change(OVERALL, overall, at, summary, None)

    def _change(
        self,
        subject: str,
        current: HealthStatus,
        at: datetime,
        description: str,
        error: str | None,
    ) -> None:
        previous = self._statuses.get(subject)
        if previous is current:
            return
        self._statuses[subject] = current
        change = HealthChange(subject, previous, current, at, description)
        self._history.append(change)
        if self._bus is not None:
            self._bus.publish(HEALTH_CHANGED_TOPIC, change)
        if self._telemetry is not None:
            self._telemetry.track_event(
                STATUS_CHANGED_EVENT,
                {
                    "Check": subject,
                    "PreviousStatus": "" if previous is None else str(previous),
                    "Status": str(current),
                    "Description": description,
                },
            )
        level = log.info if current is HealthStatus.HEALTHY else log.warning
        level(
            "health_status_changed",
            check=subject,
            previous=None if previous is None else str(previous),
            status=str(current),
            description=description,
            error=error,
        )
