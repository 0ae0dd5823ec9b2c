"""Everything at once over the last ``window``: ``GET /api/metrics/dashboard?window=1h``.

The plan's ``GetDashboardMetrics`` shape, in snake_case like the rest of the API,
each section what its own route answers::

    {"window": {"start": ISO, "end": ISO},
     "system": <GET /api/metrics/system>,
     "performance": <GET /api/metrics/performance>,
     "security": <GET /api/metrics/security>,
     "business": <GET /api/metrics/business>,      # absent while the host records none
     "health": <GET /health, with details>,       # the cached results (health.cache_seconds)
     "active_alerts": [<alert>, ...]}             # pending and firing; [] without alerting

The window ends now and is at most ``dashboard.max_window`` long (``window`` is
a duration: ``15m``, ``1h``, ``PT6H``; one hour by default). The sections are
read concurrently; one that fails is answered as ``{"error": "<type>"}`` (and
logged once), the others still answer: a dashboard shows what it can.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from digitalme.monitoring.dashboard.system import ProcessStats
from digitalme.monitoring.dashboard.timewindow import TimeWindow
from digitalme.monitoring.health.endpoints import report_body
from digitalme.monitoring.health.model import HealthReport
from digitalme.monitoring.outages import Outages

__all__ = ["Overview", "WindowReader"]


class WindowReader(Protocol):
    """A section computed over a time window (performance, security, business)."""

    async def read(self, window: TimeWindow) -> dict[str, Any]: ...


class Overview:
    """Composes the dashboard's sections; ``active_alerts`` gives the alerts as JSON."""

    def __init__(
        self,
        *,
        stats: ProcessStats,
        sections: Sequence[tuple[str, WindowReader]],
        health: Callable[[], Awaitable[HealthReport]],
        active_alerts: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self._stats = stats
        self._sections = list(sections)
        self._health = health
        self._active_alerts = active_alerts
        self._outages = Outages(
            "digitalme.monitoring.dashboard", failed="dashboard_section_failed", key="section"
        )

    async def read(self, window: TimeWindow) -> dict[str, Any]:
        names = [name for name, _ in self._sections]
        results = await asyncio.gather(
            *(reader.read(window) for _, reader in self._sections),
            self._health(),
            return_exceptions=True,
        )
        body: dict[str, Any] = {
            "window": {"start": window.start_at.isoformat(), "end": window.end_at.isoformat()},
            "system": self._stats.read(),
        }
        for name, result in zip([*names, "health"], results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancellation and the like are not a section's failure
                body[name] = self._failed(name, result)
                continue
            self._outages.recovered(name)
            body[name] = (
                report_body(result, details=True) if isinstance(result, HealthReport) else result
            )
        body["active_alerts"] = self._active_alerts()
        return body

    def _failed(self, name: str, error: Exception) -> dict[str, str]:
        self._outages.failed(name, type(error).__name__)
        return {"error": type(error).__name__}
