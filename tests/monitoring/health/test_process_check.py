"""The process check on this process: real psutil and disk readings, thresholds from settings."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from digitalme.monitoring.clock import SystemClock
from digitalme.monitoring.health import HealthStatus
from digitalme.monitoring.health.checks import ProcessCheck
from digitalme.settings import ProcessCheckSettings

LOOSE: dict[str, Any] = {
    "loop_lag_degraded_ms": 10_000,
    "loop_lag_unhealthy_ms": 20_000,
    "min_free_disk_mb": 0,
    "min_free_disk_percent": 0,
    "max_rss_mb": None,
}


def process_check(tmp_path: Path, **thresholds: Any) -> ProcessCheck:
    settings = ProcessCheckSettings(**{**LOOSE, **thresholds})
    return ProcessCheck(settings, tmp_path / "not" / "created" / "yet", clock=SystemClock())


async def test_within_thresholds_is_healthy_with_its_readings(tmp_path: Path) -> None:
    result = await process_check(tmp_path).check()
    assert result.status is HealthStatus.HEALTHY
    assert result.description == "process within its thresholds"
    assert set(result.data) == {
        "event_loop_lag_ms",
        "disk_free_mb",
        "disk_free_percent",
        "rss_mb",
    }
    assert result.data["rss_mb"] > 0  # type: ignore[operator]
    assert 0 < result.data["disk_free_percent"] <= 100  # type: ignore[operator]


async def test_memory_and_disk_over_their_thresholds_are_degraded(tmp_path: Path) -> None:
    result = await process_check(tmp_path, max_rss_mb=1, min_free_disk_percent=100).check()
    assert result.status is HealthStatus.DEGRADED
    assert "memory" in result.description
    assert "over 1 MB" in result.description
    assert "under 100%" in result.description
    too_little = await process_check(tmp_path, min_free_disk_mb=1e12).check()
    assert too_little.status is HealthStatus.DEGRADED
    assert "free disk" in too_little.description


async def test_a_blocked_event_loop_is_measured(tmp_path: Path) -> None:
    async def measure_while_blocked(check: ProcessCheck) -> HealthStatus:
        task = asyncio.create_task(check.check())
        await asyncio.sleep(0)  # the check is now asleep, waiting for its wake-up
        time.sleep(0.3)  # noqa: ASYNC251 - blocking the loop is the point of this test
        return (await task).status

    degraded = process_check(tmp_path, loop_lag_degraded_ms=100, loop_lag_unhealthy_ms=5000)
    assert await measure_while_blocked(degraded) is HealthStatus.DEGRADED
    unhealthy = process_check(tmp_path, loop_lag_degraded_ms=50, loop_lag_unhealthy_ms=100)
    assert await measure_while_blocked(unhealthy) is HealthStatus.UNHEALTHY
