"""The live hub's backplane: its shared messages between instances, over Redis pub/sub.

With several instances (uvicorn workers, replicas) an admin connected to one of
them must still see every ``HealthUpdate``, ``AlertFired`` / ``AlertResolved``
and ``SecurityEvent`` of all of them. Each :class:`~.hub.Hub` publishes what it
translates from its own bus on the backplane and broadcasts what the others
published to its own clients; snapshots, heartbeats and per-client messages
stay local.

**Envelope.** One pub/sub message per hub message on ``channel``: the JSON
``{"origin": <instance>, "message": {...}}``. A listener ignores its own
origin (so two instances must not share an ``instance`` id), and drops and
counts what is not an object of that shape, is larger than
``max_message_bytes``, or carries a type outside
:data:`~.hub_messages.SHARED_TYPES`; it keeps listening whatever comes. The
receiving side sets the message's ``instance`` to the envelope's origin.

**Never in the way.** :meth:`RedisBackplane.publish` serialises and enqueues;
a task drains the bounded queue (``queue_size``, the oldest lost first,
counted). Delivery is at most once: a message whose ``PUBLISH`` failed is
counted as dropped, not sent again. Messages published while Redis is away
wait in the queue and go out once it is back.

**Supervised.** One task holds a session: a subscription (its own connection)
plus the publishing loop. Any failure (refused connection, reset, a command
over ``timeout``, no answer to a keep-alive ``PING`` after ``keepalive``
seconds of silence) ends the session; the next one starts after a backoff of
``initial_backoff`` doubling to ``max_backoff`` seconds, with jitter (reset once
a session has lasted ``max_backoff``). The state (:class:`BackplaneState`) is
readable at any time; one log line marks the start of an outage and one its
end, never one per retry. Logs and health output name the server as
``host:port/db``: the URL's password never appears.

The queue, the supervision, the envelope's checks on arrival, the state and its
log lines are :class:`SupervisedBackplane`'s, which the store's backplane
(:mod:`.store_backplane`) shares; :class:`RedisBackplane` adds the Redis
session (subscription, keep-alive, ``PUBLISH``).

Waiting (timeouts, backoff, keep-alive) uses the event loop's time; the
``since`` timestamps come from the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NoReturn, Protocol

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.dashboard.hub_messages import SHARED_TYPES, Message
from digitalme.monitoring.errors import MonitoringError
from digitalme.monitoring.health.model import HealthCheck, HealthResult
from digitalme.monitoring.telemetry.instrumentation.redis_client import redis_target
from digitalme.settings import Settings

__all__ = [
    "CHECK_NAME",
    "MAX_MESSAGE_BYTES",
    "Backplane",
    "BackplaneCheck",
    "BackplaneError",
    "BackplaneSilent",
    "BackplaneState",
    "BackplaneStatus",
    "RedisBackplane",
    "StateListener",
    "SupervisedBackplane",
    "backplane_check",
    "decode_envelope",
    "encode_envelope",
    "redis_backplane",
]

log = structlog.get_logger("digitalme.monitoring.hub")

CHECK_NAME = "hub-backplane"
MAX_MESSAGE_BYTES = 64 * 1024
MAX_ORIGIN_CHARS = 200
_CLOSE_TIMEOUT = 2.0  # seconds to close a connection on the way out

Receiver = Callable[[Message], None]
"""Called (in the listener task) with each message of another instance."""


class BackplaneStatus(StrEnum):
    STARTING = "starting"  # the first connection is being made
    CONNECTED = "connected"  # subscribed; publishing works
    DISCONNECTED = "disconnected"  # an outage: retrying with backoff
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class BackplaneState:
    """A backplane's connection and counters at one moment.

    ``since`` is when ``status`` began (UTC); ``last_error`` the type name of
    the latest failure (never its text, which may name the server);
    ``dropped`` counts outgoing messages lost (queue full, too large, failed
    send), ``invalid`` incoming ones refused, ``echoes`` this instance's own
    messages heard back (and ignored); ``failures`` the sessions that failed or
    could not start, ``reconnects`` the ones re-established after an outage.
    """

    status: BackplaneStatus
    since: datetime
    last_error: str | None = None
    published: int = 0
    received: int = 0
    dropped: int = 0
    invalid: int = 0
    echoes: int = 0
    failures: int = 0
    reconnects: int = 0
    queued: int = 0

    @property
    def connected(self) -> bool:
        return self.status is BackplaneStatus.CONNECTED

    def to_dict(self) -> dict[str, object]:
        return {
            "status": str(self.status),
            "connected": self.connected,
            "since": self.since.isoformat(),
            "last_error": self.last_error,
            "published": self.published,
            "received": self.received,
            "dropped": self.dropped,
            "invalid": self.invalid,
            "reconnects": self.reconnects,
            "queued": self.queued,
        }


StateListener = Callable[[BackplaneState], None]
"""Called when a backplane becomes connected or disconnected (not on every retry)."""


class Backplane(Protocol):
    """Shares hub messages with the other instances.

    ``start`` gives the callbacks: ``receive`` for the messages of other
    instances, ``changed`` for connection changes. ``publish`` never blocks
    and never raises. ``medium`` names what carries the messages (``Redis``), for
    people reading the health output.
    """

    @property
    def medium(self) -> str: ...

    @property
    def state(self) -> BackplaneState: ...

    def start(self, receive: Receiver, changed: StateListener) -> None: ...

    def publish(self, message: Message) -> None: ...

    async def stop(self) -> None: ...


class BackplaneError(MonitoringError):
    """Root of the backplane's own errors."""


class BackplaneSilent(BackplaneError):
    """The subscription answered nothing, not even a ``PING``, within the timeout."""


# -- the envelope --------------------------------------------------------------------


def encode_envelope(origin: str, message: Message) -> bytes:
    """The JSON envelope of ``message`` (raises ``TypeError`` / ``ValueError`` if not JSON)."""
    envelope = {"origin": origin, "message": message}
    return json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode()


def decode_envelope(data: object, max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[str, Message] | str:
    """``(origin, message)`` from one pub/sub payload, or why it is refused."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if not isinstance(data, bytes | bytearray):
        return "not bytes"
    if len(data) > max_bytes:
        return "too large"
    try:
        envelope: Any = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return "not JSON"
    if not isinstance(envelope, dict):
        return "not an object"
    origin = envelope.get("origin")
    if not isinstance(origin, str) or not 0 < len(origin) <= MAX_ORIGIN_CHARS:
        return "no origin"
    message = envelope.get("message")
    if not isinstance(message, dict):
        return "no message"
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in SHARED_TYPES:
        return "not a shared type"
    message["instance"] = origin
    return origin, message


# -- the supervised session --------------------------------------------------------


class SupervisedBackplane(ABC):
    """What the backplanes over a server (Redis, the telemetry store) share.

    The counters and the state; :meth:`publish` (the envelope, its size, the
    bounded outbox: the oldest lost first, counted); a supervising task that runs
    one session after the other with a backoff doubling from ``initial_backoff``
    to ``max_backoff`` seconds, with jitter (reset once a session has lasted
    ``max_backoff``); the incoming envelopes' checks; one log line at the start
    of an outage and one at its end; :meth:`stop`, which flushes what is queued
    (bounded, when connected) before ending the session.

    A subclass names its ``medium`` and gives ``target`` (how logs and health
    output name the server, no secret); its :meth:`_session` connects, then
    runs :meth:`_serve` with its reader, and raises when the session ends;
    :meth:`_send` writes one batch of the outbox (``max_batch`` messages at
    most), :meth:`_unsent` decides what becomes of a batch that failed (by
    default: dropped and counted, delivery at most once).
    """

    medium: str
    """What carries the messages, for people reading the health output."""
    max_batch = 1
    """Outgoing messages per :meth:`_send`."""

    def __init__(
        self,
        instance: str,
        *,
        clock: Clock,
        target: str,
        queue_size: int,
        max_message_bytes: int,
        timeout: float,
        initial_backoff: float,
        max_backoff: float,
        rng: random.Random | None,
    ) -> None:
        self.instance = instance
        self.clock = clock
        self.target = target
        """How logs and health output name the server (never a user name or password)."""
        self.queue_size = queue_size
        self.max_message_bytes = max_message_bytes
        self.timeout = timeout
        """Seconds for connecting and for every command or statement."""
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._rng = rng or random.Random()  # noqa: S311  # jitter, not cryptography
        self._outbox: deque[bytes] = deque()
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
        self.published = 0
        self.received = 0
        self.dropped = 0
        self.invalid = 0
        self.echoes = 0
        self.failures = 0
        self.reconnects = 0
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
        self._outbox.append(data)
        self._trim()
        self._drained.clear()
        self._wake.set()

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Send what is queued (bounded, when connected), then end the session."""
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
                delay = self.initial_backoff  # a session that lasted: not a flapping link
            await asyncio.sleep(delay * (0.5 + self._rng.random() / 2))
            delay = min(delay * 2, self.max_backoff)

    @abstractmethod
    async def _session(self) -> None:
        """Connect, then :meth:`_serve`; raise (never return) when the session ends."""

    async def _serve(self, read: Coroutine[Any, Any, None]) -> NoReturn:
        """Connected: run ``read`` and the writer until one of them fails, and raise its error."""
        self._connected_at = asyncio.get_running_loop().time()
        self._connected()
        reader = asyncio.create_task(read, name="hub-backplane-read")
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
        raise BackplaneError("the backplane session ended")  # pragma: no cover

    async def _write(self) -> None:
        while True:
            while self._outbox:
                count = min(len(self._outbox), self.max_batch)
                batch = [self._outbox.popleft() for _ in range(count)]
                try:
                    await self._send(batch)
                except BaseException:
                    self._unsent(batch)
                    raise
                self.published += len(batch)
            self._drained.set()
            self._wake.clear()
            await self._wake.wait()

    @abstractmethod
    async def _send(self, batch: list[bytes]) -> None:
        """Write ``batch`` (envelopes, oldest first) on the medium, or raise."""

    def _unsent(self, batch: list[bytes]) -> None:
        """A batch whose sending failed: dropped, counted (at most once: it may have gone out)."""
        self.dropped += len(batch)

    def _accept(self, data: object, origin: str | None = None) -> None:
        """Hand one incoming envelope to the hub, unless it is refused or this instance's own.

        ``origin``, when the medium says who wrote it, must be the envelope's.
        """
        decoded = decode_envelope(data, self.max_message_bytes)
        if isinstance(decoded, str):
            self._refuse(decoded)
            return
        sender, message = decoded
        if origin is not None and sender != origin:
            self._refuse("origin mismatch")
            return
        if sender == self.instance:
            self.echoes += 1
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

    # -- state --------------------------------------------------------------------------

    def _where(self) -> dict[str, str]:
        """How the log lines of an outage name the link."""
        return {"target": self.target}

    def _connected(self) -> None:
        previous, began = self._status, self._since
        self._status = BackplaneStatus.CONNECTED
        self._since = self.clock.now()
        if previous is BackplaneStatus.DISCONNECTED:
            self.reconnects += 1
            log.info(
                "hub_backplane_reconnected",
                **self._where(),
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
            **self._where(),
            error=self._last_error,
            detail=f"the live hub serves this instance's clients only until {self.medium} is back",
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


# -- Redis ------------------------------------------------------------------------------


class RedisBackplane(SupervisedBackplane):
    """A :class:`Backplane` over Redis pub/sub on ``channel`` of the server at ``url``.

    ``timeout`` bounds connecting and every command; ``keepalive`` is the seconds
    of silence on the subscription before a ``PING``.
    """

    medium = "Redis"

    def __init__(
        self,
        url: str,
        channel: str,
        instance: str,
        *,
        clock: Clock,
        queue_size: int = 1000,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        timeout: float = 2.0,
        keepalive: float = 15.0,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        # Retries are ours (backoff, state, one log line per outage): none in the client.
        self._client: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=2,  # publishing, plus a spare; the subscription has its own
        )
        super().__init__(
            instance,
            clock=clock,
            target=redis_target(self._client),  # host:port/db
            queue_size=queue_size,
            max_message_bytes=max_message_bytes,
            timeout=timeout,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            rng=rng,
        )
        self.channel = channel
        self.keepalive = keepalive

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Send what is queued (bounded, when connected), then end the session and close."""
        await super().stop(flush_timeout)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._client.aclose()

    def _where(self) -> dict[str, str]:
        return {"target": self.target, "channel": self.channel}

    async def _session(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            async with asyncio.timeout(self.timeout):
                await pubsub.subscribe(self.channel)
            await self._serve(self._read(pubsub))
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await pubsub.aclose()
            # Connections of the publishing pool may be half-broken after a failure.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self._client.connection_pool.disconnect()

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        pinged_at: float | None = None
        while True:
            wait = self.keepalive if pinged_at is None else pinged_at + self.timeout - loop.time()
            async with asyncio.timeout(max(wait, 0.0) + self.timeout):
                raw = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=max(wait, 0.0)
                )
            if raw is not None:
                pinged_at = None  # the link is alive
                if raw.get("type") == "message":
                    self._accept(raw.get("data"))
                continue
            if pinged_at is None:
                async with asyncio.timeout(self.timeout):
                    await pubsub.ping()
                pinged_at = loop.time()
            elif loop.time() >= pinged_at + self.timeout:
                raise BackplaneSilent("no answer to PING")

    async def _send(self, batch: list[bytes]) -> None:
        (data,) = batch  # max_batch = 1: one PUBLISH a message
        async with asyncio.timeout(self.timeout):
            await self._client.publish(self.channel, data)


def _worth_logging(count: int) -> bool:
    """1, 2, 4, 8, ...: a flood of bad messages logs a handful of lines, not one each."""
    return count & (count - 1) == 0


# -- health and wiring ------------------------------------------------------------


class BackplaneCheck:
    """``hub-backplane``: Healthy when connected (or making its first connection), Degraded
    during an outage (no I/O of its own)."""

    name = CHECK_NAME

    def __init__(self, backplane: Backplane) -> None:
        self.backplane = backplane

    async def check(self) -> HealthResult:
        state = self.backplane.state
        data: dict[str, str | int | float | bool | None] = {
            "status": str(state.status),
            "since": state.since.isoformat(),
            "published": state.published,
            "received": state.received,
            "dropped": state.dropped,
            "invalid": state.invalid,
            "failures": state.failures,
            "reconnects": state.reconnects,
            "queued": state.queued,
        }
        target = getattr(self.backplane, "target", None)
        if isinstance(target, str):
            data["target"] = target
        medium = self.backplane.medium
        if state.connected:
            return HealthResult.healthy("live hub messages are shared with every instance", data)
        if state.status is BackplaneStatus.STARTING:
            # the first connection is being made (milliseconds): not an outage to report
            return HealthResult.healthy(f"connecting to {medium}", data)
        description = (
            f"{medium} unreachable since {state.since.isoformat()}: "
            "the live hub serves this instance's clients only"
        )
        return HealthResult.degraded(description, data, error=state.last_error)


def backplane_check(backplane: Backplane) -> HealthCheck:
    """The ``hub-backplane`` health check of ``backplane`` (register it Degraded)."""
    return BackplaneCheck(backplane)


def redis_backplane(settings: Settings, *, instance: str, clock: Clock) -> RedisBackplane | None:
    """The backplane the settings ask for: None without Redis or with ``cluster.backplane`` off."""
    url = settings.redis_url
    if url is None or not settings.cluster.backplane:
        return None
    return RedisBackplane(url, settings.cluster.backplane_channel, instance, clock=clock)
