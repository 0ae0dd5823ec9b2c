"""The live hub's backplane through the shared telemetry store, for when there is no Redis.

``digitalme serve --workers N`` runs N processes on one SQLite store, and
replicas may share a PostgreSQL store without any Redis: their hubs still share
``HealthUpdate``, ``AlertFired`` / ``AlertResolved`` and ``SecurityEvent``
through the table ``telemetry_hub_messages``. The envelope, its checks, the
state, the bounded queue, the supervision and the ``hub-backplane`` health
check are those of :mod:`.backplane` (:class:`~.backplane.SupervisedBackplane`);
this module adds the store's session: polling, writing, pruning.

**Writing.** :meth:`StoreBackplane.publish` serialises and enqueues (bounded by
``queue_size``, the oldest lost first, counted); a task inserts what is queued
in batches of up to ``max_batch``, one transaction each. A batch whose
transaction failed goes back to the front of the queue and is written once the
store is back.

**Reading.** Every ``poll_interval`` seconds a task reads the rows above the
highest id seen (``max_batch`` at most) and hands the others' messages to the
hub, in id order. A writer's rows commit in id order, so each instance's
messages arrive in the order it published them. On PostgreSQL concurrent
writers may commit out of id order: an id below the highest seen may become
visible later. So the reader remembers which ids of the last ``grace`` seconds
it has read, and asks again for the missing ones at each poll until ``grace``
seconds have passed since a row above them was seen (longer than a write
transaction lasts, its ``timeout``): nothing is skipped, nothing delivered
twice. The first read starts at the highest id then stored: no replay of old
messages. Rows over ``max_message_bytes``, of an unknown type or not an
envelope of their ``origin`` are dropped and counted (and never fetched whole
when too large).

**Retention.** Every ``prune_interval`` seconds an instance deletes rows older
than ``retention`` seconds (at most ``prune_limit`` per statement); every
instance does so, harmlessly.

**Supervised** as the Redis backplane is: any failure of the store ends the
session (status ``disconnected``, one log line per outage, never one per
retry), the next one starts after a backoff doubling from ``initial_backoff``
to ``max_backoff`` seconds with jitter; the first successful read makes it
``connected`` again. Every statement has a ``timeout``. Logs and health output
name the store as ``sqlite:<path>`` or ``postgresql:host:port/db``: never a
user name or password.

Waiting (polling, grace, backoff, timeouts) uses the event loop's time; the
rows' ``at`` and the ``since`` timestamps come from the injected clock.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, case, delete, func, insert, null, select
from sqlalchemy.ext.asyncio import AsyncEngine

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.dashboard.backplane import (
    MAX_MESSAGE_BYTES,
    MAX_ORIGIN_CHARS,
    Backplane,
    SupervisedBackplane,
    redis_backplane,
)
from digitalme.monitoring.storage.schema import hub_messages
from digitalme.settings import Settings

__all__ = ["StoreBackplane", "hub_backplane", "store_backplane", "store_target"]

_table = hub_messages


def store_target(engine: AsyncEngine) -> str:
    """How logs name the store: ``sqlite:<path>`` or ``postgresql:host:port/db`` (no secret)."""
    url = engine.url
    if engine.dialect.name == "sqlite":
        return f"sqlite:{url.database or ':memory:'}"
    return f"{engine.dialect.name}:{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


class StoreBackplane(SupervisedBackplane):
    """A :class:`~.backplane.Backplane` over the telemetry store's ``telemetry_hub_messages``.

    ``engine`` is the store's (migrated) engine, which stays open on ``stop``;
    ``instance`` this instance's id, unique among the instances sharing the
    store; ``timeout`` bounds every statement (and so every write transaction).
    See the module's documentation.
    """

    medium = "the telemetry store"

    def __init__(
        self,
        engine: AsyncEngine,
        instance: str,
        *,
        clock: Clock,
        poll_interval: float = 0.25,
        retention: float = 60.0,
        grace: float = 5.0,
        max_batch: int = 500,
        queue_size: int = 1000,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        prune_interval: float = 10.0,
        prune_limit: int = 5000,
        timeout: float = 5.0,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < len(instance) <= MAX_ORIGIN_CHARS:
            raise ValueError(f"instance must have 1 to {MAX_ORIGIN_CHARS} characters")
        for name, value in (
            ("poll_interval", poll_interval),
            ("grace", grace),
            ("prune_interval", prune_interval),
            ("timeout", timeout),
            ("initial_backoff", initial_backoff),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive")
        if retention <= grace:
            raise ValueError("retention must be longer than grace")
        if min(max_batch, queue_size, prune_limit, max_message_bytes) < 1:
            raise ValueError(
                "max_batch, queue_size, prune_limit and max_message_bytes must be >= 1"
            )
        super().__init__(
            instance,
            clock=clock,
            target=store_target(engine),  # sqlite:<path> or postgresql:host:port/db
            queue_size=queue_size,
            max_message_bytes=max_message_bytes,
            timeout=timeout,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            rng=rng,
        )
        self.engine = engine
        self.poll_interval = poll_interval
        self.retention = retention
        """Seconds a row is kept (by the ``at`` of the injected clock)."""
        self.grace = grace
        """Seconds an id below the highest seen may still appear (out-of-order commits)."""
        self.max_batch = max_batch
        self.prune_interval = prune_interval
        self.prune_limit = prune_limit
        # The reader's position: every id <= _floor is settled; _seen holds the ids
        # in (_floor, _high] already read; _marks the (loop time, _high) of each poll.
        self._floor = 0
        self._positioned = False
        self._high = 0
        self._seen: set[int] = set()
        self._marks: deque[tuple[float, int]] = deque()
        self._pruned_at = -float("inf")
        self.pruned = 0
        """Rows deleted by this instance's retention."""

    # -- the session -------------------------------------------------------------------

    async def _session(self) -> None:
        if not self._positioned:
            await self._begin()
        else:
            await self._poll()  # what came while the store was away
        await self._serve(self._read())

    async def _begin(self) -> None:
        """Start reading above the highest id stored now: old messages are not replayed."""
        async with asyncio.timeout(self.timeout), self.engine.connect() as connection:
            top = (await connection.execute(select(func.max(_table.c.id)))).scalar()
        self._floor = self._high = int(top or 0)
        self._positioned = True

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        behind = False
        while True:
            if not behind:
                await asyncio.sleep(self.poll_interval)
            behind = await self._poll()
            if loop.time() - self._pruned_at >= self.prune_interval:
                await self._prune()

    async def _send(self, batch: list[bytes]) -> None:
        """Insert ``batch`` in one transaction."""
        at = self.clock.time()
        rows = [
            {"at": at, "origin": self.instance, "body": body.decode()}  # ASCII: json escapes
            for body in batch
        ]
        async with asyncio.timeout(self.timeout), self.engine.begin() as connection:
            await connection.execute(insert(_table), rows)

    def _unsent(self, batch: list[bytes]) -> None:
        # Not written: back to the front, for the next session (or lost on stop).
        self._outbox.extendleft(reversed(batch))
        self._trim()

    # -- reading ---------------------------------------------------------------------------

    async def _poll(self) -> bool:
        """Read the new rows and the missing ones of the grace window; hand them over.

        True when ``max_batch`` new rows came: there may be more right away.
        """
        body = case(
            (_table.c.origin == self.instance, null()),  # our own: not worth fetching
            (func.length(_table.c.body) > self.max_message_bytes, null()),  # never fetched whole
            else_=_table.c.body,
        )
        columns = (_table.c.id, _table.c.origin, body)
        missing = self._missing()
        rows: list[tuple[int, str, str | None]] = []
        async with asyncio.timeout(self.timeout), self.engine.connect() as connection:
            if missing:
                found = await connection.execute(select(*columns).where(_table.c.id.in_(missing)))
                rows.extend(_rows(found.all()))
            fresh = await connection.execute(
                select(*columns)
                .where(_table.c.id > self._high)
                .order_by(_table.c.id)
                .limit(self.max_batch)
            )
            new = _rows(fresh.all())
            rows.extend(new)
        rows.sort(key=lambda row: row[0])
        for ident, origin, text in rows:
            self._take(ident, origin, text)
        self._settle(asyncio.get_running_loop().time())
        return len(new) >= self.max_batch

    def _missing(self) -> list[int]:
        """Ids of the grace window not read yet (lowest first, ``max_batch`` at most)."""
        if self._high - self._floor <= len(self._seen):
            return []
        missing: list[int] = []
        for ident in range(self._floor + 1, self._high):
            if ident not in self._seen:
                missing.append(ident)
                if len(missing) >= self.max_batch:
                    break
        return missing

    def _settle(self, now: float) -> None:
        """Give up on the ids below the highest one seen ``grace`` seconds ago or more."""
        self._marks.append((now, self._high))
        floor = self._floor
        while self._marks and self._marks[0][0] <= now - self.grace:
            floor = max(floor, self._marks.popleft()[1])
        if floor != self._floor:
            self._floor = floor
            self._seen = {ident for ident in self._seen if ident > floor}

    def _take(self, ident: int, origin: str, body: str | None) -> None:
        if ident <= self._floor or ident in self._seen:
            return  # already handed over
        self._seen.add(ident)
        self._high = max(self._high, ident)
        if origin == self.instance:
            self.echoes += 1
            return
        if body is None:
            self._refuse("too large")
            return
        self._accept(body, origin)

    async def _prune(self) -> None:
        """Delete rows older than ``retention`` (``prune_limit`` at most per statement)."""
        self._pruned_at = asyncio.get_running_loop().time()
        cutoff = self.clock.time() - self.retention
        old = select(_table.c.id).where(_table.c.at < cutoff).limit(self.prune_limit)
        async with asyncio.timeout(self.timeout), self.engine.begin() as connection:
            result = await connection.execute(delete(_table).where(_table.c.id.in_(old)))
        deleted = max(result.rowcount, 0)
        self.pruned += deleted
        if deleted >= self.prune_limit:
            self._pruned_at = -float("inf")  # more to delete: again at the next poll


def _rows(rows: Sequence[Row[Any, Any, Any]]) -> list[tuple[int, str, str | None]]:
    return [(int(row[0]), str(row[1]), None if row[2] is None else str(row[2])) for row in rows]


# -- wiring ----------------------------------------------------------------------------


def store_backplane(
    settings: Settings,
    *,
    engine: AsyncEngine | None,
    instance: str,
    clock: Clock,
    **options: Any,
) -> StoreBackplane | None:
    """A backplane through the store: None without a store or with ``cluster.backplane`` off."""
    if engine is None or not settings.cluster.backplane:
        return None
    return StoreBackplane(engine, instance, clock=clock, **options)


def hub_backplane(
    settings: Settings,
    *,
    engine: AsyncEngine | None,
    instance: str,
    clock: Clock,
    workers: int | None = None,
) -> Backplane | None:
    """The live hub's backplane the deployment needs, if any.

    With ``cluster.backplane`` off: none. With ``connection_strings.redis``:
    Redis pub/sub. Otherwise through the telemetry store, when other instances
    can share it: always on PostgreSQL, on SQLite only with several worker
    processes (``workers``, by default ``server.workers``). A lone process has
    no one to talk to.
    """
    redis = redis_backplane(settings, instance=instance, clock=clock)
    if redis is not None:
        return redis
    if engine is None or not settings.cluster.backplane:
        return None
    alone = engine.dialect.name == "sqlite" and (workers or settings.server.workers) <= 1
    if alone:
        return None
    return store_backplane(settings, engine=engine, instance=instance, clock=clock)
