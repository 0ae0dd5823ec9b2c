"""Runs health checks: concurrently, each bounded by its timeout, cached and single-flight.

Every check has at most one run in flight. A request for health takes each
check's latest result when it is fresh enough (``cache_seconds``, or the
check's own ``min_interval`` when longer), joins the run in flight when there
is one, and only otherwise starts a run. So any number of concurrent requests
cause at most one upstream call per check, and ``/health/ready`` (which leaves
the ``external`` checks out) never waits on, nor triggers, an external call.

A run never raises: a check that raises or outlives its timeout counts as its
registration's failure status, with the redacted error or "timed out after N s".
Runs are tasks of their own, shielded from the requests waiting on them: a
client that hangs up does not cancel a run that others share.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.health.model import (
    CheckFailed,
    HealthEntry,
    HealthReport,
    HealthResult,
    JsonValue,
)
from digitalme.monitoring.health.registry import HealthRegistration, HealthRegistry
from digitalme.monitoring.telemetry.redaction import Redactor

__all__ = ["HealthRunner"]


class HealthRunner:
    """Produces :class:`HealthReport` objects for the endpoints, the prober and the CLI."""

    def __init__(
        self,
        registry: HealthRegistry,
        *,
        clock: Clock,
        redactor: Redactor,
        cache_seconds: float,
    ) -> None:
        self.registry = registry
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._redactor = redactor
        self._latest: dict[str, tuple[float, HealthEntry]] = {}
        self._inflight: dict[str, asyncio.Task[HealthEntry]] = {}
        self.runs = 0
        """Check runs started so far (each one call of a check)."""

    async def report(
        self, *, exclude_tags: frozenset[str] = frozenset(), max_age: float | None = None
    ) -> HealthReport:
        """The checks without any of ``exclude_tags``, each at most ``max_age`` seconds old
        (default ``cache_seconds``; a check's ``min_interval`` wins when longer)."""
        fresh_for = self.cache_seconds if max_age is None else max_age
        now = self._clock.monotonic()
        slots: list[HealthEntry | asyncio.Future[HealthEntry]] = []
        for registration in self.registry.selected(exclude_tags):
            latest = self._latest.get(registration.name)
            if latest is not None and now - latest[0] < max(fresh_for, registration.min_interval):
                slots.append(latest[1])
                continue
            task = self._inflight.get(registration.name) or self._start(registration)
            slots.append(asyncio.shield(task))
        waiting = [slot for slot in slots if isinstance(slot, asyncio.Future)]
        if waiting:
            await asyncio.gather(*waiting)
        entries = tuple(
            slot.result() if isinstance(slot, asyncio.Future) else slot for slot in slots
        )
        return HealthReport(entries, self._clock.now())

    def latest(self) -> dict[str, HealthEntry]:
        """The latest result of every check that has run, by name."""
        return {name: entry for name, (_, entry) in self._latest.items()}

    async def aclose(self) -> None:
        """Cancel the runs in flight and wait for them to end."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _start(self, registration: HealthRegistration) -> asyncio.Task[HealthEntry]:
        name = registration.name
        self.runs += 1
        # An empty context: the run belongs to no request, so the telemetry of its
        # calls must not be attributed to whichever request happened to start it.
        task = asyncio.create_task(
            self._run(registration), name=f"health-check:{name}", context=contextvars.Context()
        )
        self._inflight[name] = task

        def forget(done: asyncio.Task[HealthEntry]) -> None:
            if self._inflight.get(name) is done:
                del self._inflight[name]

        task.add_done_callback(forget)
        return task

    async def _run(self, registration: HealthRegistration) -> HealthEntry:
        started = self._clock.monotonic()
        result = await self._outcome(registration)
        finished = self._clock.monotonic()
        entry = HealthEntry(
            registration.name,
            replace(result, duration=max(finished - started, 0.0)),
            registration.tags,
            self._clock.now(),
        )
        self._latest[registration.name] = (finished, entry)
        return entry

    async def _outcome(self, registration: HealthRegistration) -> HealthResult:
        failure = registration.failure_status
        deadline = asyncio.timeout(registration.timeout)
        try:
            async with deadline:
                result = await registration.check.check()
        except TimeoutError as exc:
            if deadline.expired():
                return HealthResult(failure, f"timed out after {registration.timeout:g} s")
            return HealthResult(failure, "check failed", error=self._error_text(exc))
        except CheckFailed as exc:
            cause = exc.__cause__
            return HealthResult(
                failure,
                self._redactor.redact_text(exc.description),
                self._clean_data(exc.data),
                None if cause is None else self._error_text(cause),
            )
        except Exception as exc:
            return HealthResult(failure, "check failed", error=self._error_text(exc))
        if not isinstance(result, HealthResult):
            return HealthResult(
                failure, f"check returned {type(result).__name__}, not a HealthResult"
            )
        return replace(
            result,
            description=self._redactor.redact_text(result.description),
            data=self._clean_data(result.data),
            error=None if result.error is None else self._redactor.redact_text(result.error),
        )

    def _error_text(self, exc: BaseException) -> str:
        message = str(exc)
        text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        return self._redactor.redact_text(text)

    def _clean_data(self, data: Mapping[str, JsonValue]) -> Mapping[str, JsonValue]:
        """Text values redacted (a check may quote an upstream); numbers and flags as they are."""
        return MappingProxyType(
            {
                key: self._redactor.redact_text(value) if isinstance(value, str) else value
                for key, value in data.items()
            }
        )
