"""Leadership: hold the lease, and run the leader's workers while it is held.

:class:`Leadership` tries the :class:`~.lease.Lease` at start (awaited: a lone
instance leads from its first moment) and then every third of the lease time.
When it wins, it awaits ``on_elected`` (the facade starts the alert engine,
which reloads the alerts from the store, and the dispatcher); when the lease is
lost (another instance holds it, or renewals failed until it lapsed) it awaits
``on_demoted`` (both stop). :meth:`Leadership.stop` steps down and releases
the lease, so that another instance takes over at once instead of after the
lease time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from digitalme.monitoring.cluster.lease import Lease
from digitalme.monitoring.outages import Outages

__all__ = ["Leadership"]

log = structlog.get_logger("digitalme.monitoring.cluster")

Action = Callable[[], Awaitable[None]]


class Leadership:
    """Keeps trying to hold ``lease``; ``on_elected`` / ``on_demoted`` as it is won or lost."""

    def __init__(
        self,
        lease: Lease,
        *,
        on_elected: Action,
        on_demoted: Action,
        strict: bool = False,
    ) -> None:
        self.lease = lease
        self._on_elected = on_elected
        self._on_demoted = on_demoted
        self.strict = strict
        self.leading = False
        self.elections = 0
        """Times this instance became the leader."""
        self.errors = 0
        self._outages = Outages(
            "digitalme.monitoring.cluster",
            failed="lease_renewal_failed",
            recovered="lease_store_recovered",
            key="lease",
        )
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def interval(self) -> float:
        return self.lease.ttl / 3.0

    async def start(self) -> None:
        """One attempt now, then keep trying in the background."""
        if self._task is not None:
            return
        await self.step()
        self._task = asyncio.create_task(self._run(), name="leadership")

    async def stop(self) -> None:
        """Stop trying, step down and release the lease (best effort)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None
        async with self._lock:
            await self._demote()
        try:
            await self.lease.release()
        except Exception as exc:
            if self.strict:
                raise
            log.warning("lease_release_failed", lease=self.lease.name, error=type(exc).__name__)

    async def step(self) -> None:
        """Renew or try to take the lease once, and start or stop the leader's work."""
        async with self._lock:
            try:
                await self.lease.acquire()
                self._outages.recovered(self.lease.name)
            except Exception as exc:
                if self.strict:
                    raise
                self.errors += 1
                self._outages.failed(self.lease.name, type(exc).__name__)
            if self.lease.held():
                if not self.leading:
                    self.leading = True
                    self.elections += 1
                    log.info(
                        "leader_elected",
                        lease=self.lease.name,
                        instance=self.lease.holder,
                        token=self.lease.token,
                    )
                    await self._on_elected()
            else:
                await self._demote()

    async def _demote(self) -> None:
        if not self.leading:
            return
        self.leading = False
        log.info("leader_stepped_down", lease=self.lease.name, instance=self.lease.holder)
        await self._on_demoted()

    async def _run(self) -> None:
        while True:
            # renew on schedule, but look again the moment the lease would lapse
            delay = self.interval
            if self.leading:
                delay = min(delay, self.lease.valid_for)
            await asyncio.sleep(delay)
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                if self.strict:
                    raise
                self.errors += 1
                log.exception("leadership_step_failed", lease=self.lease.name)
