"""One object for uptime: heartbeats from the prober, figures, the SLO tracker,
maintenance windows, deployment markers and the retention of it all."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.health.model import HealthReport, HealthStatus
from digitalme.monitoring.outages import Outages
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.uptime.maintenance import MaintenanceCalendar, MaintenanceWindow
from digitalme.monitoring.uptime.model import OVERALL, BeatStatus, Heartbeat, Source
from digitalme.monitoring.uptime.recorder import HeartbeatRecorder
from digitalme.monitoring.uptime.slo import SloTracker
from digitalme.monitoring.uptime.store import UptimeStore
from digitalme.monitoring.uptime.windows import DAY, UptimeReader
from digitalme.settings import UptimeSettings

__all__ = ["UptimeMonitor", "heartbeats_of"]

log = structlog.get_logger("digitalme.monitoring.uptime")

CALENDAR_REFRESH = 60.0
"""Seconds between reloads of the maintenance windows (other processes may change them)."""
MAX_MESSAGE = 200


def heartbeats_of(report: HealthReport, source: Source, interval: float) -> list[Heartbeat]:
    """One heartbeat per check of ``report`` and one for ``overall`` (the worst of them)."""
    at = report.timestamp.timestamp()
    beats = [
        Heartbeat(
            component=entry.name,
            source=source,
            at=at,
            status=BeatStatus.of(entry.status),
            interval=interval,
            duration_ms=entry.result.duration * 1000.0,
            failing=() if entry.status is HealthStatus.HEALTHY else (entry.name,),
            message=entry.result.description[:MAX_MESSAGE],
        )
        for entry in report.entries
    ]
    failing = tuple(e.name for e in report.entries if e.status is not HealthStatus.HEALTHY)
    beats.append(
        Heartbeat(
            component=OVERALL,
            source=source,
            at=at,
            status=BeatStatus.of(report.status),
            interval=interval,
            duration_ms=report.total_duration * 1000.0,
            failing=failing,
            message=("not healthy: " + ", ".join(failing))[:MAX_MESSAGE] if failing else "",
        )
    )
    return beats


class UptimeMonitor:
    """Records the prober's rounds as ``inside`` heartbeats and serves the figures."""

    def __init__(
        self,
        settings: UptimeSettings,
        store: UptimeStore,
        *,
        clock: Clock,
        probe_interval: float,
        telemetry: TelemetryClient | None = None,
        strict: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.probe_interval = probe_interval
        self.calendar = MaintenanceCalendar()
        self.recorder = HeartbeatRecorder(
            store,
            Source.INSIDE,
            self.calendar,
            unknown_after_intervals=settings.unknown_after_intervals,
            unknown_as_down=settings.unknown == "down",
            strict=strict,
        )
        self.reader = UptimeReader(store, self.calendar, settings, clock)
        self.slo = SloTracker(self.reader, settings.slo, clock, telemetry)
        self._tasks: list[asyncio.Task[None]] = []
        self._outages = Outages("digitalme.monitoring.uptime", failed="uptime_job_failed")

    async def on_report(self, report: HealthReport) -> None:
        """The prober's listener: record the round's heartbeats."""
        await self.recorder.record(heartbeats_of(report, Source.INSIDE, self.probe_interval))

    async def start(self) -> None:
        await self.refresh_calendar()
        self.slo.start()
        self._tasks = [
            asyncio.create_task(
                self._every(CALENDAR_REFRESH, self.refresh_calendar), name="uptime-calendar"
            ),
            asyncio.create_task(
                self._every(self.settings.retention_interval, self.apply_retention),
                name="uptime-retention",
            ),
        ]

    async def stop(self) -> None:
        await self.slo.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def refresh_calendar(self) -> None:
        try:
            self.calendar.replace(await self.store.maintenance_windows())
        except Exception as exc:
            self._outages.failed("calendar", type(exc).__name__)
        else:
            self._outages.recovered("calendar")

    async def save_maintenance(self, window: MaintenanceWindow) -> None:
        await self.store.save_maintenance(window)
        self.calendar.put(window)

    async def delete_maintenance(self, window_id: str) -> bool:
        deleted = await self.store.delete_maintenance(window_id)
        self.calendar.remove(window_id)
        return deleted

    async def apply_retention(self) -> int:
        """Delete what is older than ``uptime.retention`` keeps; the rows deleted."""
        retention = self.settings.retention
        now = self.clock.time()
        try:
            deleted = await self.store.delete_older(
                heartbeats=now - retention.heartbeats_days * DAY,
                levels={
                    60: now - retention.minute_buckets_days * DAY,
                    3600: now - retention.hour_buckets_days * DAY,
                    86400: now - retention.day_buckets_days * DAY,
                },
                incidents=now - retention.incidents_days * DAY,
            )
        except Exception as exc:
            self._outages.failed("retention", type(exc).__name__)
            return 0
        self._outages.recovered("retention")
        return deleted

    async def _every(self, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            await job()
