"""The live hub's backplane through the shared telemetry store, for when there is no Redis.

``digitalme serve --workers N`` runs N processes on one SQLite store, and
replicas may share a PostgreSQL store without any Redis: their hubs still share
``HealthUpdate``, ``AlertFired`` / ``AlertResolved`` and ``SecurityEvent``
through the table ``telemetry_hub_messages``. The envelope, its checks, the
state and the ``hub-backplane`` health check are those of :mod:`.backplane`.

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

**Supervised** like the Redis backplane: any failure of the store ends the
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
import contextlib
import random
from collections import deque
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import Row, case, delete, func, insert, null, select
from sqlalchemy.ext.asyncio import AsyncEngine

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.dashboard.backplane import (
    MAX_MESSAGE_BYTES,
    MAX_ORIGIN_CHARS,
    Backplane,
    BackplaneState,
    BackplaneStatus,
    Receiver,
    StateListener,
    decode_envelope,
    encode_envelope,
    redis_backplane,
)
from digitalme.monitoring.dashboard.hub_messages import Message
from digitalme.monitoring.storage.schema import hub_messages
from digitalme.settings import Settings

__all__ = ["StoreBackplane", "hub_backplane", "store_backplane", "store_target"]

log = structlog.get_logger("digitalme.monitoring.hub")

_table = hub_messages


def store_target(engine: AsyncEngine) -> str:
    """How logs name the store: ``sqlite:<path>`` or ``postgresql:host:port/db`` (no secret)."""
    url = engine.url
    if engine.dialect.name == "sqlite":
        return f"sqlite:{url.database or ':memory:'}"
    return f"{engine.dialect.name}:{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


class StoreBackplane:
    """A :class:`~.backplane.Backplane` over the telemetry store's ``telemetry_hub_messages``.

    ``engine`` is the store's (migrated) engine; ``instance`` this instance's id,
    unique among the instances sharing the store. See the module's documentation.
    """

    medium = "the telemetry store"
    """What carries the messages, for health descriptions."""

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
        self.engine = engine
        self.instance = instance
        self.clock = clock
        self.poll_interval = poll_interval
        self.retention = retention
        """Seconds a row is kept (by the ``at`` of the injected clock)."""
        self.grace = grace
        """Seconds an id below the highest seen may still appear (out-of-order commits)."""
        self.max_batch = max_batch
        self.queue_size = queue_size
        self.max_message_bytes = max_message_bytes
        self.prune_interval = prune_interval
        self.prune_limit = prune_limit
        self.timeout = timeout
        """Seconds for every statement (and so for every write transaction)."""
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._rng = rng or random.Random()  # noqa: S311  # jitter, not cryptography
        self.target = store_target(engine)
        """``sqlite:<path>`` or ``postgresql:host:port/db``: how logs name the store."""
        self._outbox: deque[str] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._receive: Receiver | None = None
        self._changed: StateListener | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected_at: float | None = None
        self._status = BackplaneStatus.STARTING
        self._since = clock.now()
        self._last_error: str | None = None
        # The reader's position: every id <= _floor is settled; _seen holds the ids
        # in (_floor, _high] already read; _marks the (loop time, _high) of each poll.
        self._floor = 0
        self._positioned = False
        self._high = 0
        self._seen: set[int] = set()
        self._marks: deque[tuple[float, int]] = deque()
        self._pruned_at = -float("inf")
        self.published = 0
        self.received = 0
        self.dropped = 0
        self.invalid = 0
        self.echoes = 0
        self.failures = 0
        self.reconnects = 0
        self.pruned = 0
        """Rows deleted by this instance's retention."""
        self.errors = 0
        """Exceptions of the callbacks (bugs), logged and counted."""

    @property
    def state(self) -> BackplaneState:
        return BackplaneState(
            status=self._status,
            since=self._since,
            last_error=self._last_error,
            published=self.published,
            received=self.received,
            dropped=self.dropped,
            invalid=self.invalid,
            echoes=self.echoes,
            failures=self.failures,
            reconnects=self.reconnects,
            queued=len(self._outbox),
        )

    @property
    def running(self) -> bool:
        return self._task is not None

    # -- the hub's side ---------------------------------------------------------------

    def start(self, receive: Receiver, changed: StateListener) -> None:
        """Start the supervised session (in the running loop)."""
        if self._task is not None:
            return
        self._receive = receive
        self._changed = changed
        self._status = BackplaneStatus.STARTING
        self._since = self.clock.now()
        self._task = asyncio.create_task(self._supervise(), name="hub-backplane")

    def publish(self, message: Message) -> None:
        """Enqueue ``message`` for the other instances; never blocks, never raises."""
        try:
            data = encode_envelope(self.instance, message)
        except (TypeError, ValueError):
            self._drop("not JSON")
            return
        if len(data) > self.max_message_bytes:
            self._drop("too large")
            return
        self._outbox.append(data.decode())  # ASCII: json.dumps escapes the rest
        self._trim()
        self._drained.clear()
        self._wake.set()

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Write what is queued (bounded, when connected), then end the session.

        The engine is the store's: it stays open.
        """
        task, self._task = self._task, None
        if task is not None:
            if self._status is BackplaneStatus.CONNECTED:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(flush_timeout):
                        await self._drained.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._status = BackplaneStatus.STOPPED
        self._since = self.clock.now()

    def _trim(self) -> None:
        while len(self._outbox) > self.queue_size:
            self._outbox.popleft()
            self.dropped += 1

    def _drop(self, reason: str) -> None:
        self.dropped += 1
        if _worth_logging(self.dropped):
            log.warning("hub_backplane_message_dropped", reason=reason, dropped=self.dropped)

    # -- supervision -----------------------------------------------------------------

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.initial_backoff
        while True:
            self._connected_at = None
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
            if (
                self._connected_at is not None
                and loop.time() - self._connected_at >= self.max_backoff
            ):
                delay = self.initial_backoff  # a session that lasted: not a flapping store
            await asyncio.sleep(delay * (0.5 + self._rng.random() / 2))
            delay = min(delay * 2, self.max_backoff)

    async def _session(self) -> None:
        if not self._positioned:
            await self._begin()
        else:
            await self._poll()  # what came while the store was away
        self._connected_at = asyncio.get_running_loop().time()
        self._connected()
        reader = asyncio.create_task(self._read(), name="hub-backplane-read")
        writer = asyncio.create_task(self._write(), name="hub-backplane-write")
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
        raise RuntimeError("the backplane session ended")  # pragma: no cover

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

    async def _write(self) -> None:
        while True:
            while self._outbox:
                batch = [
                    self._outbox.popleft() for _ in range(min(len(self._outbox), self.max_batch))
                ]
                try:
                    at = self.clock.time()
                    rows = [{"at": at, "origin": self.instance, "body": body} for body in batch]
                    async with asyncio.timeout(self.timeout), self.engine.begin() as connection:
                        await connection.execute(insert(_table), rows)
                except BaseException:
                    # Not written: back to the front, for the next session (or lost on stop).
                    self._outbox.extendleft(reversed(batch))
                    self._trim()
                    raise
                self.published += len(batch)
            self._drained.set()
            self._wake.clear()
            await self._wake.wait()

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
        decoded = decode_envelope(body, self.max_message_bytes)
        if isinstance(decoded, str):
            self._refuse(decoded)
            return
        sender, message = decoded
        if sender != origin:
            self._refuse("origin mismatch")
            return
        self.received += 1
        if self._receive is None:
            return
        try:
            self._receive(message)
        except Exception:
            self.errors += 1
            log.exception("hub_backplane_receiver_failed", type=message.get("type"))

    def _refuse(self, reason: str) -> None:
        self.invalid += 1
        if _worth_logging(self.invalid):
            log.warning("hub_backplane_message_refused", reason=reason, invalid=self.invalid)

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

    # -- state --------------------------------------------------------------------------

    def _connected(self) -> None:
        previous, began = self._status, self._since
        self._status = BackplaneStatus.CONNECTED
        self._since = self.clock.now()
        if previous is BackplaneStatus.DISCONNECTED:
            self.reconnects += 1
            log.info(
                "hub_backplane_reconnected",
                target=self.target,
                outage_seconds=round((self._since - began).total_seconds(), 3),
            )
        self._notify()

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._last_error = type(exc).__name__
        if self._status is BackplaneStatus.DISCONNECTED:
            return  # still the same outage: nothing new to say
        self._status = BackplaneStatus.DISCONNECTED
        self._since = self.clock.now()
        log.warning(
            "hub_backplane_disconnected",
            target=self.target,
            error=self._last_error,
            detail="the live hub serves this instance's clients only until the store is back",
        )
        self._notify()

    def _notify(self) -> None:
        if self._changed is None:
            return
        try:
            self._changed(self.state)
        except Exception:
            self.errors += 1
            log.exception("hub_backplane_listener_failed")


def _rows(rows: Sequence[Row[Any, Any, Any]]) -> list[tuple[int, str, str | None]]:
    return [(int(row[0]), str(row[1]), None if row[2] is None else str(row[2])) for row in rows]


def _worth_logging(count: int) -> bool:
    """1, 2, 4, 8, ...: a flood of bad messages logs a handful of lines, not one each."""
    return count & (count - 1) == 0


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
