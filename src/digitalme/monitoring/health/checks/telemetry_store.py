"""``telemetry-store``: the telemetry store is reachable and accepts writes.

One transaction inserts a marker event, reads it back and rolls back, so the
store is left as it was: this proves the connection, the schema and (on SQLite)
the write lock, without adding a row.
"""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, insert, select

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.health.model import CheckFailed, HealthResult
from digitalme.monitoring.storage import TelemetryStore, schema

__all__ = ["CLOSE_WAIT_SECONDS", "TelemetryStoreCheck"]

CLOSE_WAIT_SECONDS = 5.0
"""How long shutdown waits for a probe still running before cancelling it."""


class TelemetryStoreCheck:
    """Checks a :class:`TelemetryStore` with a rolled-back write."""

    name = "telemetry-store"

    def __init__(self, store: TelemetryStore, *, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._probe: asyncio.Task[int] | None = None

    async def check(self) -> HealthResult:
        data = {"backend": self._store.backend}
        # The statements run in a task of their own that a timeout does not cancel:
        # a SQLite statement cancelled midway can leave its connection unusable (the
        # pipeline avoids it for the same reason). A run still going is joined, so
        # a hung store never piles probes up; the database's own timeouts end it.
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._write_and_read(), name="health-store-probe")
            # A probe that outlives its check fails unobserved: its outcome is consumed
            # here so that asyncio does not report "exception never retrieved".
            self._probe.add_done_callback(_consume)
        try:
            found = await asyncio.shield(self._probe)
        except Exception as exc:
            raise CheckFailed("telemetry store unreachable or not writable", data) from exc
        if found != 1:
            raise CheckFailed("telemetry store did not read back its write", data)
        return HealthResult.healthy("telemetry store reachable and writable", data)

    async def aclose(self) -> None:
        """Let a probe still running finish (briefly), rather than cut a SQLite statement."""
        probe, self._probe = self._probe, None
        if probe is None or probe.done():
            return
        await asyncio.wait({probe}, timeout=CLOSE_WAIT_SECONDS)
        probe.cancel()

    async def _write_and_read(self) -> int:
        events = schema.events
        marker = f"health-check:{uuid.uuid4().hex}"
        now = self._clock.time()
        async with self._store.engine.connect() as connection:
            transaction = await connection.begin()
            try:
                await connection.execute(
                    insert(events).values(
                        ts=now,
                        instance=marker,
                        weight=1.0,
                        name=marker,
                        measurements={},
                        properties={},
                    )
                )
                found = await connection.scalar(
                    select(func.count())
                    .select_from(events)
                    .where(events.c.name == marker, events.c.ts == now)
                )
            finally:
                await transaction.rollback()
        return int(found or 0)


def _consume(task: asyncio.Task[int]) -> None:
    if not task.cancelled():
        task.exception()
