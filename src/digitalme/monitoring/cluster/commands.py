"""Admin changes made on an instance that does not lead, applied by the leader.

The alert engine's state lives in the leader's memory (written through to the
store). An admin who raises or resolves an alert, or changes a rule or a
silence, through another instance must not write around it: that instance
queues a command in ``telemetry_alert_commands`` (:meth:`CommandQueue.submit`)
and waits for its outcome; the leader's :class:`CommandRunner` takes queued
commands every :data:`RUNNER_INTERVAL` seconds, applies them through its own
engine and records the outcome (every :data:`ALONE_INTERVAL` seconds while no other
instance has written telemetry lately: a lone instance queues nothing, and one that
just started is seen within a second). No leader within ``timeout`` seconds:
:class:`~digitalme.monitoring.alerts.errors.LeaderUnavailable` (503). Rules
and silences are saved to the store by the instance that received them; the
command only tells the leader to read them again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from digitalme.monitoring.alerts.errors import AlertNotFound, LeaderUnavailable
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.cluster.remote import ALONE_INTERVAL
from digitalme.monitoring.outages import Outages
from digitalme.monitoring.storage import schema

__all__ = ["CommandKind", "CommandQueue", "CommandRunner"]

log = structlog.get_logger("digitalme.monitoring.cluster")

WAIT_STEP = 0.05
"""Seconds between looks at a submitted command's outcome."""
RUNNER_INTERVAL = 0.1
"""Seconds between the leader's looks at the queue."""
BATCH = 100
KEEP_DONE = 3600.0
"""Seconds an applied command is kept (for the record) before it is deleted."""


class CommandKind(StrEnum):
    RAISE = "raise"  # body: the engine's raise_alert arguments
    RESOLVE = "resolve"  # body: alert_id, resolved_by
    RELOAD = "reload"  # rules or silences changed in the store


class CommandQueue:
    """The queue in the store: submit and wait (any instance), take and finish (the leader)."""

    def __init__(self, engine: AsyncEngine, clock: Clock, *, timeout: float) -> None:
        self.engine = engine
        self.clock = clock
        self.timeout = timeout

    async def submit(self, kind: CommandKind, body: Mapping[str, Any]) -> dict[str, Any]:
        """Queue a command and return its outcome once the leader applied it.

        Raises :class:`LeaderUnavailable` when that takes longer than ``timeout``.
        """
        table = schema.alert_commands
        async with self.engine.begin() as connection:
            result = await connection.execute(
                table.insert()
                .values(kind=str(kind), body=dict(body), created_at=self.clock.time())
                .returning(table.c.id)
            )
            command_id = int(result.scalar_one())
        # a bound on waiting (the event loop's time), not a time the engine reasons about
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout):
                while True:
                    await asyncio.sleep(WAIT_STEP)
                    async with self.engine.connect() as connection:
                        row = (
                            await connection.execute(
                                select(table.c.done_at, table.c.outcome).where(
                                    table.c.id == command_id
                                )
                            )
                        ).one()
                    if row.done_at is not None:
                        return dict(row.outcome or {})
        # withdrawn unless the leader took it meanwhile (then it is applied, unanswered)
        async with self.engine.begin() as connection:
            await connection.execute(
                delete(table).where(table.c.id == command_id, table.c.done_at.is_(None))
            )
        raise LeaderUnavailable(self.timeout)

    async def take(self) -> list[tuple[int, CommandKind, dict[str, Any]]]:
        """Queued commands, oldest first."""
        table = schema.alert_commands
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(table.c.id, table.c.kind, table.c.body)
                    .where(table.c.done_at.is_(None))
                    .order_by(table.c.id)
                    .limit(BATCH)
                )
            ).all()
        return [(int(row.id), CommandKind(row.kind), dict(row.body)) for row in rows]

    async def finish(self, command_id: int, outcome: Mapping[str, Any]) -> None:
        table = schema.alert_commands
        now = self.clock.time()
        async with self.engine.begin() as connection:
            await connection.execute(
                update(table)
                .where(table.c.id == command_id)
                .values(done_at=now, outcome=dict(outcome))
            )
            await connection.execute(delete(table).where(table.c.done_at < now - KEEP_DONE))


Apply = Callable[[CommandKind, dict[str, Any]], Awaitable[dict[str, Any]]]


class CommandRunner:
    """On the leader: applies queued commands with ``apply`` (the facade's), in order."""

    def __init__(
        self,
        queue: CommandQueue,
        apply: Apply,
        *,
        alone: Callable[[], bool] = lambda: False,
        strict: bool = False,
    ) -> None:
        self.queue = queue
        self._apply = apply
        self._alone = alone
        self.strict = strict
        self.applied = 0
        self.errors = 0
        self._outages = Outages(
            "digitalme.monitoring.cluster",
            failed="alert_commands_failed",
            recovered="alert_commands_recovered",
        )
        self._task: asyncio.Task[None] | None = None
        # outcomes of applied commands whose record failed: a retry must not apply twice
        self._unrecorded: dict[int, dict[str, Any]] = {}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="alert-commands")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def interval(self) -> float:
        """Seconds until the next look at the queue."""
        return ALONE_INTERVAL if self._alone() else RUNNER_INTERVAL

    async def run_once(self) -> int:
        """Apply what is queued; returns how many commands were applied."""
        done = 0
        for command_id, kind, body in await self.queue.take():
            outcome = self._unrecorded.get(command_id)
            if outcome is None:
                try:
                    outcome = await self._apply(kind, body)
                except AlertNotFound as exc:
                    outcome = {"error": "alert_not_found", "alert_id": exc.alert_id}
                if len(self._unrecorded) >= BATCH * 10:
                    self._unrecorded.pop(next(iter(self._unrecorded)))
                self._unrecorded[command_id] = outcome
            await self.queue.finish(command_id, outcome)
            del self._unrecorded[command_id]
            done += 1
        self.applied += done
        return done

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
                self._outages.recovered("queue")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.strict:
                    raise
                self.errors += 1
                self._outages.failed("queue", type(exc).__name__)
            await asyncio.sleep(self.interval())
