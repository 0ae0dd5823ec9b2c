"""``process``: this process's event-loop lag, free disk for the data directory, memory.

* Event-loop lag: how late a short sleep wakes up. A loop busy with blocking
  work answers every request late by as much.
* Free disk space on the file system of ``server.data_dir`` (SQLite files and
  the telemetry store live there), in MB and in percent.
* Resident memory (RSS).

Each reading is compared with its thresholds (``health.process``): lag over the
degraded threshold is Degraded, over the unhealthy one Unhealthy; free disk under
either minimum, or RSS over its maximum, is Degraded. The status is the worst
reading; the description names every reading over its threshold.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import psutil  # type: ignore[import-untyped,unused-ignore]  # as in telemetry.system

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.health.model import HealthResult, HealthStatus, worst
from digitalme.settings import ProcessCheckSettings

__all__ = ["LAG_PROBE_SECONDS", "ProcessCheck"]

LAG_PROBE_SECONDS = 0.01
"""The sleep whose oversleep is the lag: short, so the check stays cheap."""
_MB = 1024 * 1024


class ProcessCheck:
    """Reads the process's vital signs and judges them against ``settings``."""

    name = "process"

    def __init__(
        self,
        settings: ProcessCheckSettings,
        data_dir: Path,
        *,
        clock: Clock,
        process: psutil.Process | None = None,
    ) -> None:
        self._settings = settings
        self._data_dir = data_dir
        self._clock = clock
        self._process = process if process is not None else psutil.Process()

    async def check(self) -> HealthResult:
        settings = self._settings
        lag_ms = await self._loop_lag_ms()
        disk = shutil.disk_usage(_existing(self._data_dir))
        free_mb = disk.free / _MB
        free_percent = 100.0 * disk.free / disk.total if disk.total else 0.0
        rss_mb = self._process.memory_info().rss / _MB

        findings: list[tuple[HealthStatus, str]] = []
        if lag_ms > settings.loop_lag_unhealthy_ms:
            findings.append(
                (
                    HealthStatus.UNHEALTHY,
                    f"event-loop lag {lag_ms:.0f} ms over {settings.loop_lag_unhealthy_ms:g} ms",
                )
            )
        elif lag_ms > settings.loop_lag_degraded_ms:
            findings.append(
                (
                    HealthStatus.DEGRADED,
                    f"event-loop lag {lag_ms:.0f} ms over {settings.loop_lag_degraded_ms:g} ms",
                )
            )
        if free_mb < settings.min_free_disk_mb:
            findings.append(
                (
                    HealthStatus.DEGRADED,
                    f"free disk {free_mb:.0f} MB under {settings.min_free_disk_mb:g} MB",
                )
            )
        if free_percent < settings.min_free_disk_percent:
            findings.append(
                (
                    HealthStatus.DEGRADED,
                    f"free disk {free_percent:.1f}% under {settings.min_free_disk_percent:g}%",
                )
            )
        if settings.max_rss_mb is not None and rss_mb > settings.max_rss_mb:
            findings.append(
                (HealthStatus.DEGRADED, f"memory {rss_mb:.0f} MB over {settings.max_rss_mb:g} MB")
            )

        status = worst(found for found, _ in findings)
        description = "; ".join(text for _, text in findings) or "process within its thresholds"
        data = {
            "event_loop_lag_ms": round(lag_ms, 3),
            "disk_free_mb": round(free_mb, 1),
            "disk_free_percent": round(free_percent, 2),
            "rss_mb": round(rss_mb, 1),
        }
        return HealthResult(status, description, data)

    async def _loop_lag_ms(self) -> float:
        started = self._clock.monotonic()
        await asyncio.sleep(LAG_PROBE_SECONDS)
        elapsed = self._clock.monotonic() - started
        return max(elapsed - LAG_PROBE_SECONDS, 0.0) * 1000.0


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (the data directory may not exist yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
