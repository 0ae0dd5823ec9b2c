"""``GET /api/metrics/system``: this process's vital signs, read when asked.

The body::

    {
      "pid": 4242,
      "python": {"version": "3.11.9", "implementation": "CPython"},
      "started_at": "2026-01-01T00:00:00+00:00",   # when Monitoring started
      "uptime_seconds": 3600.0,                     # monotonic, since then
      "memory": {"rss_bytes": 73400320,
                 "gc": [{"generation": 0, "collections": 412,
                         "collected": 9120, "uncollectable": 0}, ...]},
      "threads": 7,                                 # OS threads
      "open_fds": 23,                               # null where the OS has none
      "cpu": {"percent": 3.5, "total_seconds": 12.75}
    }

``cpu.percent`` is the process's CPU use since the previous call of this route
(psutil semantics: it can exceed 100 on several cores), null on the first call,
which only starts the measure. It uses its own ``psutil.Process``, so that it
neither disturbs nor is disturbed by the :class:`~digitalme.monitoring.telemetry.
system.SystemSampler`, which records the same readings as metrics on its
interval (chart them through ``/api/metrics/series``, names in that module).

A reading that fails (``AccessDenied``, a vanished ``/proc`` entry) is null and
logged once until it succeeds again; it never fails the others.
"""

from __future__ import annotations

import gc
import os
import platform
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]  # types-psutil not installed

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.outages import Outages

__all__ = ["ProcessStats"]


class ProcessStats:
    """Reads the process's vital signs for the system route.

    ``started_at`` and the uptime count from :meth:`mark_started` (the facade
    calls it when monitoring starts), or from construction until then.
    """

    def __init__(self, clock: Clock, *, process: psutil.Process | None = None) -> None:
        self._clock = clock
        self._process = process if process is not None else psutil.Process()
        self._cpu_primed = False
        self._outages = Outages(
            "digitalme.monitoring.dashboard",
            failed="process_reading_failed",
            recovered="process_reading_recovered",
            key="reading",
        )
        self.started_at: datetime = clock.now()
        self._started_monotonic = clock.monotonic()

    def mark_started(self) -> None:
        """Count the uptime from now."""
        self.started_at = self._clock.now()
        self._started_monotonic = self._clock.monotonic()

    @property
    def uptime_seconds(self) -> float:
        return max(0.0, self._clock.monotonic() - self._started_monotonic)

    def read(self) -> dict[str, Any]:
        """The route's JSON body (see the module's docstring)."""
        return {
            "pid": os.getpid(),
            "python": {
                "version": platform.python_version(),
                "implementation": platform.python_implementation(),
            },
            "started_at": self.started_at.isoformat(),
            "uptime_seconds": self.uptime_seconds,
            "memory": {
                "rss_bytes": self._reading("rss", lambda: self._process.memory_info().rss),
                "gc": [
                    {
                        "generation": generation,
                        "collections": stats["collections"],
                        "collected": stats["collected"],
                        "uncollectable": stats["uncollectable"],
                    }
                    for generation, stats in enumerate(gc.get_stats())
                ],
            },
            "threads": self._reading("threads", self._process.num_threads),
            "open_fds": self._reading("open_fds", self._process.num_fds) if psutil.POSIX else None,
            "cpu": {
                "percent": self._reading("cpu_percent", self._cpu_percent),
                "total_seconds": self._reading("cpu_seconds", self._cpu_seconds),
            },
        }

    def _cpu_percent(self) -> float | None:
        percent = float(self._process.cpu_percent(interval=None))
        if not self._cpu_primed:  # psutil's first call has no previous one: 0.0
            self._cpu_primed = True
            return None
        return percent

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def _reading(self, name: str, read: Callable[[], Any]) -> Any:
        try:
            value = read()
        except Exception as exc:
            self._outages.failed(name, repr(exc))
            return None
        self._outages.recovered(name)
        return value
