"""The outside watcher: probes a running instance's ``/health/ready`` and records
``outside`` heartbeats.

The service's own prober cannot see its process die, hang or become unreachable;
a watcher in another process (``digitalme watch``) can. Each probe becomes one
heartbeat of ``component`` (``overall`` unless told otherwise):

* 200 with status Healthy: up; 200 with status Degraded: degraded;
* 503, any other status, a body that is not a health report, a connection
  error or a timeout: down.

``message`` is a short description that never holds the URL or an exception's
text ("HTTP 503", "unreachable", "timed out"); ``failing`` names the checks the
body shows as not healthy. Probes run at ``start + k * interval`` on the
monotonic clock, so the schedule does not drift with the probes' own duration;
a probe that overruns its slot skips the slots it missed rather than bunching up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import structlog

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.errors import MonitoringError
from digitalme.monitoring.health.endpoints import READY_PATH
from digitalme.monitoring.outages import Outages
from digitalme.monitoring.uptime.maintenance import COMPONENT_PATTERN, MaintenanceCalendar
from digitalme.monitoring.uptime.model import OVERALL, BeatStatus, Heartbeat, Source
from digitalme.monitoring.uptime.recorder import HeartbeatRecorder
from digitalme.monitoring.uptime.store import UptimeStore
from digitalme.settings import UptimeSettings

__all__ = ["CALENDAR_REFRESH", "TargetError", "Watcher", "ready_url"]

log = structlog.get_logger("digitalme.monitoring.uptime")

CALENDAR_REFRESH = 60.0
"""Seconds between reloads of the maintenance windows (the service or the CLI change them)."""
MAX_BODY = 1 << 20
"""Bytes of a health answer read; a larger body is not a health report."""
MAX_MESSAGE = 200
MAX_FAILING = 50
"""Check names taken from one answer."""
_STATUSES = {"Healthy": BeatStatus.UP, "Degraded": BeatStatus.DEGRADED}


class TargetError(MonitoringError, ValueError):
    """The watcher's target is not a usable http(s) base URL; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def ready_url(target: str) -> str:
    """``<target>/health/ready`` for an http(s) base URL; raises :class:`TargetError`."""
    text = target.strip()
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        raise TargetError("not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise TargetError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise TargetError("has no host")
    if parts.query or parts.fragment:
        raise TargetError("must be a base URL without query or fragment")
    return text.rstrip("/") + READY_PATH


class Watcher:
    """Probes ``target``'s readiness every ``interval`` seconds and records the answers.

    ``timeout`` bounds each probe (default: the interval, at most 10 s). Use it as
    an async context manager (or call :meth:`aclose`) to release the HTTP client.
    """

    def __init__(
        self,
        target: str,
        store: UptimeStore,
        *,
        clock: Clock,
        interval: float,
        component: str = OVERALL,
        timeout: float | None = None,
        settings: UptimeSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not math.isfinite(interval) or interval <= 0:
            raise ValueError("interval must be a positive number of seconds")
        if timeout is not None and (not math.isfinite(timeout) or timeout <= 0):
            raise ValueError("timeout must be a positive number of seconds")
        if not re.match(COMPONENT_PATTERN, component):
            raise ValueError(f"component {component[:100]!r} is not a component name")
        self.url = ready_url(target)
        self.store = store
        self.clock = clock
        self.interval = interval
        self.component = component
        self.timeout = timeout if timeout is not None else min(interval, 10.0)
        uptime = settings or UptimeSettings()
        self.calendar = MaintenanceCalendar()
        self.recorder = HeartbeatRecorder(
            store,
            Source.OUTSIDE,
            self.calendar,
            unknown_after_intervals=uptime.unknown_after_intervals,
            unknown_as_down=uptime.unknown == "down",
        )
        # No proxies or netrc from the environment: the settings tree is the one source.
        self._client = httpx.AsyncClient(
            timeout=self.timeout,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            headers={"Accept": "application/json"},
        )
        self._outages = Outages("digitalme.monitoring.uptime", failed="watcher_job_failed")
        self._calendar_loaded_at: float | None = None
        self.probes = 0
        self.errors = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def refresh_calendar(self) -> None:
        """Reload the maintenance windows from the store (kept as they were on failure)."""
        self._calendar_loaded_at = self.clock.monotonic()
        try:
            self.calendar.replace(await self.store.maintenance_windows())
        except Exception as exc:
            self.errors += 1
            self._outages.failed("calendar", type(exc).__name__)
        else:
            self._outages.recovered("calendar")

    async def probe(self) -> Heartbeat:
        """Ask the target once; the answer as a heartbeat (never raises for a bad answer)."""
        at = self.clock.time()
        started = self.clock.monotonic()
        try:
            async with self._client.stream("GET", self.url) as response:
                body = await _read_bounded(response)
                elapsed_ms = (self.clock.monotonic() - started) * 1000.0
                status_code = response.status_code
        except httpx.TimeoutException:
            return self._beat(at, BeatStatus.DOWN, None, message="timed out")
        except httpx.ConnectError:
            return self._beat(at, BeatStatus.DOWN, None, message="unreachable")
        except httpx.HTTPError:
            # The connection broke mid-answer (a process killed while answering, a
            # proxy hanging up) or the answer was not HTTP.
            return self._beat(at, BeatStatus.DOWN, None, message="connection failed")
        return self._answer(at, elapsed_ms, status_code, body)

    def _answer(
        self, at: float, elapsed_ms: float, status_code: int, body: bytes | None
    ) -> Heartbeat:
        report = _health_report(body)
        failing = _failing(report) if report is not None else ()
        named = f": not healthy: {', '.join(failing)}" if failing else ""
        if status_code == 200:
            reported = None if report is None else report.get("status")
            status = _STATUSES.get(reported) if isinstance(reported, str) else None
            if status is None:
                return self._beat(
                    at, BeatStatus.DOWN, elapsed_ms, message="HTTP 200: not a health report"
                )
            message = f"{reported}{named}" if status is BeatStatus.DEGRADED else ""
            return self._beat(at, status, elapsed_ms, failing=failing, message=message)
        return self._beat(
            at, BeatStatus.DOWN, elapsed_ms, failing=failing, message=f"HTTP {status_code}{named}"
        )

    def _beat(
        self,
        at: float,
        status: BeatStatus,
        duration_ms: float | None,
        *,
        failing: tuple[str, ...] = (),
        message: str,
    ) -> Heartbeat:
        # No duration without an answer: a timeout or a refused connection is not a
        # response time, and would distort the response-time figures either way.
        return Heartbeat(
            component=self.component,
            source=Source.OUTSIDE,
            at=at,
            status=status,
            interval=self.interval,
            duration_ms=duration_ms,
            failing=failing,
            message=message[:MAX_MESSAGE],
        )

    async def probe_once(self) -> Heartbeat:
        """Probe and record one heartbeat (the recorder logs and counts a store failure)."""
        if (
            self._calendar_loaded_at is None
            or self.clock.monotonic() - self._calendar_loaded_at >= CALENDAR_REFRESH
        ):
            await self.refresh_calendar()
        beat = await self.probe()
        self.probes += 1
        if not await self.recorder.record([beat]):
            self.errors += 1
        return beat

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every ``interval`` seconds until ``stop`` is set; errors are logged, not raised."""
        start = self.clock.monotonic()
        slot = 0
        log.info("watcher_started", component=self.component, interval=self.interval)
        while not stop.is_set():
            try:
                await self.probe_once()
            except Exception as exc:
                self.errors += 1
                log.exception("watcher_probe_failed", error=type(exc).__name__)
            elapsed = self.clock.monotonic() - start
            # the next slot after now: start + k * interval, skipping missed ones
            slot = max(slot + 1, math.floor(elapsed / self.interval) + 1)
            delay = start + slot * self.interval - self.clock.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        log.info("watcher_stopped", probes=self.probes, errors=self.errors)


async def _read_bounded(response: httpx.Response) -> bytes | None:
    """The body, or None when it is larger than :data:`MAX_BODY`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _health_report(body: bytes | None) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        report = json.loads(body)
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def _failing(report: dict[str, Any]) -> tuple[str, ...]:
    """Names of the entries the body shows as not healthy (none when it hides them)."""
    results = report.get("results")
    if not isinstance(results, list):
        return ()
    names: list[str] = []
    for item in results:
        if not isinstance(item, dict):
            continue
        name, status = item.get("name"), item.get("status")
        if isinstance(name, str) and name and isinstance(status, str) and status != "Healthy":
            names.append(name[:100])
        if len(names) >= MAX_FAILING:
            break
    return tuple(names)
