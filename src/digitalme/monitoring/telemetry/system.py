"""SystemSampler: the process's own vital signs, sampled on an interval with psutil.

Each sample records, through :meth:`TelemetryClient.track_metric`:

============================  =====================================================
``process.uptime_seconds``    seconds since the process started (psutil create time)
``process.memory.rss_bytes``  resident set size
``process.cpu.percent``       CPU % since the previous sample (psutil semantics: can
                              exceed 100 on several cores); the first sample only
                              primes psutil's counter and reports nothing
``process.gc.collections``    cumulative collections, one series per ``generation``
                              dimension (0, 1, 2), from :func:`gc.get_stats`
``process.threads``           number of OS threads
``process.open_fds``          open file descriptors (POSIX only; skipped elsewhere)
============================  =====================================================

The returned dict and :attr:`SystemSampler.latest` use the metric names as keys,
except GC: ``process.gc.collections.gen0`` / ``.gen1`` / ``.gen2``.

A reading that fails (``AccessDenied``, a vanished ``/proc`` entry...) is skipped
and logged once until it succeeds again; it never stops the other readings or
the loop. Sampling runs on the event loop: a sample is a handful of ``/proc``
reads (tens of microseconds), cheaper than a hop to a thread.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Mapping
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]  # types-psutil not installed
import structlog

from digitalme.monitoring.clock import Clock, SystemClock
from digitalme.monitoring.outages import Outages
from digitalme.monitoring.telemetry.client import TelemetryClient


def _log() -> Any:
    # Resolved per call (only on rare paths) so that logging configured later, or
    # structlog.testing.capture_logs, is honoured despite logger caching.
    return structlog.get_logger("digitalme.telemetry.system")


UPTIME = "process.uptime_seconds"
RSS = "process.memory.rss_bytes"
CPU = "process.cpu.percent"
GC_COLLECTIONS = "process.gc.collections"
THREADS = "process.threads"
OPEN_FDS = "process.open_fds"

# (key in the sample dict, metric name, dimensions, value)
Reading = tuple[str, str, Mapping[str, str] | None, float]


class SystemSampler:
    """Samples this process every ``interval`` seconds once started.

    ``start()`` takes the first sample at once (so :attr:`latest` is filled
    when it returns) and then samples in an asyncio task; ``stop()`` ends the
    task promptly. :meth:`sample` can also be called directly.
    """

    def __init__(
        self,
        client: TelemetryClient,
        interval: float = 10.0,
        *,
        clock: Clock | None = None,
        process: psutil.Process | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self._client = client
        self.interval = float(interval)
        self._clock: Clock = clock or SystemClock()
        self._process = process if process is not None else psutil.Process()
        self._create_time: float | None = None
        self._cpu_primed = False
        readings: list[tuple[str, Callable[[], list[Reading]]]] = [
            ("uptime", self._uptime),
            ("rss", self._rss),
            ("cpu", self._cpu),
            ("gc", self._gc),
            ("threads", self._threads),
        ]
        if psutil.POSIX:
            readings.append(("open_fds", self._open_fds))
        self._readings = readings
        self._outages = Outages(
            "digitalme.telemetry.system",
            failed="system_reading_failed",
            recovered="system_reading_recovered",
            key="reading",
        )
        self._latest: dict[str, float] = {}
        self.latest_at: float | None = None  # epoch seconds of the latest sample
        self.samples_taken = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def latest(self) -> dict[str, float]:
        """A copy of the latest sample (empty before the first one)."""
        return dict(self._latest)

    @property
    def running(self) -> bool:
        """Whether the sampling task is running."""
        return self._task is not None and not self._task.done()

    # -- sampling ------------------------------------------------------------------

    def sample(self) -> dict[str, float]:
        """Take every reading, record each as a metric and return them by key."""
        values: dict[str, float] = {}
        for reading, read in self._readings:
            try:
                produced = read()
            except Exception as exc:
                self._outages.failed(reading, repr(exc))
                continue
            self._outages.recovered(reading)
            for key, name, dims, value in produced:
                values[key] = value
                self._client.track_metric(name, value, dims)
        self._latest = values
        self.latest_at = self._clock.time()
        self.samples_taken += 1
        return dict(values)

    def _uptime(self) -> list[Reading]:
        if self._create_time is None:
            self._create_time = float(self._process.create_time())
        return [(UPTIME, UPTIME, None, max(0.0, self._clock.time() - self._create_time))]

    def _rss(self) -> list[Reading]:
        return [(RSS, RSS, None, float(self._process.memory_info().rss))]

    def _cpu(self) -> list[Reading]:
        percent = float(self._process.cpu_percent(interval=None))
        if not self._cpu_primed:  # psutil's first call has no previous sample: 0.0
            self._cpu_primed = True
            return []
        return [(CPU, CPU, None, percent)]

    def _gc(self) -> list[Reading]:
        return [
            (
                f"{GC_COLLECTIONS}.gen{generation}",
                GC_COLLECTIONS,
                {"generation": str(generation)},
                float(stats["collections"]),
            )
            for generation, stats in enumerate(gc.get_stats())
        ]

    def _threads(self) -> list[Reading]:
        return [(THREADS, THREADS, None, float(self._process.num_threads()))]

    def _open_fds(self) -> list[Reading]:
        return [(OPEN_FDS, OPEN_FDS, None, float(self._process.num_fds()))]

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Take a sample now, then one every ``interval`` seconds until :meth:`stop`."""
        if self.running:
            return
        self._stopping = asyncio.Event()
        self._sample_safely()
        self._task = asyncio.create_task(self._run(self._stopping), name="system-sampler")

    async def stop(self) -> None:
        """Stop sampling and wait for the task to end (no-op when not running)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        await asyncio.wait({task})  # never raises the task's outcome into the caller
        if not task.cancelled() and task.exception() is not None:
            _log().error("system_sampler_crashed", error=repr(task.exception()))

    async def _run(self, stopping: asyncio.Event) -> None:
        while True:
            try:
                await asyncio.wait_for(stopping.wait(), self.interval)
                return
            except TimeoutError:
                pass
            self._sample_safely()

    def _sample_safely(self) -> None:
        try:
            self.sample()
        except Exception:
            self._client.internal_errors += 1
            _log().exception("system_sample_failed")
