"""A lease in the store's database: one holder at a time, and a fencing token.

Several instances share one telemetry store; the alert engine and the
dispatcher must run on one of them only. Each instance calls
:meth:`Lease.acquire` every third of the lease time: the holder renews it,
the others take it over once it has expired (a dead or stuck holder), and each
change of holder adds one to the row's ``token``.

**Who may act.** The holder acts only while :meth:`Lease.held` is true: until
``ttl - skew`` seconds (monotonic clock) after its last successful renewal
*started*, so it stops before anyone else may take over, as long as the
instances' wall clocks agree within ``skew`` (a fifth of the lease; NTP keeps
them within milliseconds).

**Fencing.** A holder that was paused (a long GC, a frozen VM, a lost network)
may wake up after another instance took over. Every write that only the
leader may make runs :meth:`Lease.fence` first, inside its transaction: an
``UPDATE`` of the lease row that matches only while this instance holds the
current token. It takes the row's write lock, so a takeover cannot commit
between the check and the writes; a lost lease raises :class:`LeaseLost` and
the transaction rolls back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.errors import MonitoringError
from digitalme.monitoring.storage import schema

__all__ = ["Lease", "LeaseLost", "LeaseState"]

SKEW_FRACTION = 0.2
"""The part of the lease the holder gives up, for clocks that disagree."""


class LeaseLost(MonitoringError):
    """This instance does not hold the lease (any more): a leader-only write was refused."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"{holder} does not hold the lease {name!r}")
        self.name = name
        self.holder = holder


@dataclass(frozen=True, slots=True)
class LeaseState:
    """The lease row as last read: who holds it, with which token, until when (epoch s)."""

    holder: str
    token: int
    expires_at: float


class Lease:
    """The lease ``name`` for the instance ``holder`` (see the module's documentation)."""

    def __init__(
        self, engine: AsyncEngine, name: str, holder: str, *, ttl: float, clock: Clock
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.engine = engine
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.clock = clock
        self.token: int | None = None
        """The fencing token while this instance holds the lease, else None."""
        self.state: LeaseState | None = None
        """The row as last seen (whoever holds it)."""
        self._valid_until = -math.inf
        postgres = engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if postgres else sqlite.insert

    def held(self) -> bool:
        """Whether this instance may act as the holder now."""
        return self.token is not None and self.clock.monotonic() < self._valid_until

    @property
    def valid_for(self) -> float:
        """Seconds left before this instance must stop acting (0 when it does not hold it)."""
        if self.token is None:
            return 0.0
        return max(0.0, self._valid_until - self.clock.monotonic())

    async def acquire(self) -> bool:
        """Renew the lease, or take it when it is free or expired; True when held.

        Database errors are raised (the caller retries); :meth:`held` then lapses
        on its own when renewals keep failing.
        """
        started = self.clock.monotonic()
        now = self.clock.time()
        table = schema.leases
        async with self.engine.begin() as connection:
            created = await connection.execute(
                self._insert(table)
                .values(
                    name=self.name,
                    holder=self.holder,
                    token=1,
                    expires_at=now + self.ttl,
                    acquired_at=now,
                )
                .on_conflict_do_nothing(index_elements=[table.c.name])
                .returning(table.c.token)
            )
            token = created.scalar_one_or_none()
            if token is None:
                mine = table.c.holder == self.holder
                renewed = await connection.execute(
                    update(table)
                    .where(table.c.name == self.name, or_(mine, table.c.expires_at <= now))
                    .values(
                        holder=self.holder,
                        token=case((mine, table.c.token), else_=table.c.token + 1),
                        acquired_at=case((mine, table.c.acquired_at), else_=now),
                        expires_at=now + self.ttl,
                    )
                    .returning(table.c.token)
                )
                token = renewed.scalar_one_or_none()
            if token is None:
                row = (
                    await connection.execute(
                        select(table.c.holder, table.c.token, table.c.expires_at).where(
                            table.c.name == self.name
                        )
                    )
                ).one()
                self.state = LeaseState(row.holder, int(row.token), float(row.expires_at))
                self.token = None
                self._valid_until = -math.inf
                return False
        self.token = int(token)
        self.state = LeaseState(self.holder, self.token, now + self.ttl)
        self._valid_until = started + self.ttl * (1.0 - SKEW_FRACTION)
        return True

    async def release(self) -> None:
        """Give the lease up at once (a clean shutdown: the next instance need not wait)."""
        token, self.token = self.token, None
        self._valid_until = -math.inf
        if token is None:
            return
        table = schema.leases
        async with self.engine.begin() as connection:
            await connection.execute(
                update(table)
                .where(
                    table.c.name == self.name,
                    table.c.holder == self.holder,
                    table.c.token == token,
                )
                .values(expires_at=0.0)
            )

    async def fence(self, connection: AsyncConnection) -> None:
        """Raise :class:`LeaseLost` unless this instance holds the lease; else lock its row
        until ``connection``'s transaction ends (see the module's documentation)."""
        token = self.token
        if token is None or not self.held():
            raise LeaseLost(self.name, self.holder)
        table = schema.leases
        result = await connection.execute(
            update(table)
            .where(
                table.c.name == self.name,
                table.c.holder == self.holder,
                table.c.token == token,
            )
            .values(token=table.c.token)
        )
        if result.rowcount != 1:
            self.token = None
            self._valid_until = -math.inf
            raise LeaseLost(self.name, self.holder)
