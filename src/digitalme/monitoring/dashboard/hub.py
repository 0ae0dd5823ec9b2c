"""The live hub: admin clients of the dashboard, their groups, and the fan-out to them.

One bus subscription for the whole hub (health changes, alert events, security
events) and two loops (``MetricsSnapshot`` every ``snapshot_interval`` seconds;
``Heartbeat`` and the latest overall ``HealthUpdate`` every
``heartbeat_interval``) turn into messages (:mod:`.hub_messages`) that
:meth:`Hub.broadcast` *enqueues* for every client that wants their group.
Nothing here sends: each connection (WebSocket or SSE, :mod:`.hub_routes`) has
its own sender that takes from its :class:`HubClient`, so a slow client never
slows the others.

Bounds: at most ``max_connections`` clients (:class:`HubFull` beyond); each
client's queue holds ``queue_size`` messages, the oldest lost first (counted,
and announced by a ``Dropped`` notice when the client reads again); a client
whose queue stays full for ``stall_timeout`` seconds (monotonic clock) is
closed (code 1008). :meth:`Hub.stop` closes every client with 1001.

Groups: a client that joined nothing gets every group; its first ``join``
narrows it to that group, later ones add to it; ``leave`` removes a group (from
every group too, so leaving ``metrics`` first means "everything but metrics").
``Welcome``, ``Joined``/``Left``, ``Pong``, ``Dropped``, ``Heartbeat``,
``Backplane`` and ``Error`` belong to no group.

Instances: with an ``instance`` id, what the hub makes from its bus and its
snapshots carry ``"instance"``. With a ``backplane`` (:mod:`.backplane`), what
it makes from its bus is also published there, and what the other instances
publish is broadcast here as if it came from the local bus (same groups);
when the backplane is lost or back, every client gets a ``Backplane`` message.
Without one, nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from digitalme.monitoring.alerts.engine import ALERT_EVENT_TOPIC
from digitalme.monitoring.alerts.model import AlertEvent
from digitalme.monitoring.bus import BusMessage, EventBus, Subscription
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.dashboard import hub_messages as messages
from digitalme.monitoring.dashboard.backplane import Backplane, BackplaneState, BackplaneStatus
from digitalme.monitoring.dashboard.hub_messages import Group, Message, group_of
from digitalme.monitoring.dashboard.hub_snapshot import LiveSnapshot
from digitalme.monitoring.health.model import HealthStatus
from digitalme.monitoring.health.prober import HEALTH_CHANGED_TOPIC, HealthChange
from digitalme.monitoring.telemetry.client import SECURITY_TOPIC
from digitalme.monitoring.telemetry.items import SecurityEventItem
from digitalme.monitoring.telemetry.redaction import Redactor

__all__ = [
    "GOING_AWAY",
    "POLICY_VIOLATION",
    "TRY_AGAIN_LATER",
    "Hub",
    "HubClient",
    "HubError",
    "HubFull",
]

log = structlog.get_logger("digitalme.monitoring.hub")

GOING_AWAY = 1001  # the hub stops
POLICY_VIOLATION = 1008  # a client that stays stuck, or sends what it should not
TRY_AGAIN_LATER = 1013  # too many clients
BUS_QUEUE_SIZE = 1000


class HubError(Exception):
    """Root of the hub's errors."""


@dataclass
class HubFull(HubError):
    """``max_connections`` clients are connected already."""

    max_connections: int

    def __str__(self) -> str:
        return f"the live hub has {self.max_connections} clients already"


class HubClient:
    """One connection's groups and bounded outgoing queue; its sender calls :meth:`next`."""

    def __init__(self, ident: int, *, queue_size: int, clock: Clock) -> None:
        self.ident = ident
        self.queue_size = queue_size
        self._clock = clock
        self._queue: deque[Message] = deque()
        self._wake = asyncio.Event()
        self.groups: set[Group] = set(Group)
        self._joined_any = False
        self.authenticated = False
        self.dropped = 0
        """Messages lost since the connection opened."""
        self._unreported = 0
        self.full_since: float | None = None
        """Monotonic time the queue was first found full without being read since."""
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""

    def join(self, group: Group) -> None:
        if not self._joined_any:
            self.groups = set()
            self._joined_any = True
        self.groups.add(group)

    def leave(self, group: Group) -> None:
        self._joined_any = True
        self.groups.discard(group)

    def wants(self, group: Group | None) -> bool:
        return group is None or group in self.groups

    def offer(self, message: Message) -> None:
        """Enqueue without waiting; a full queue loses its oldest message."""
        if self.closed.is_set():
            return
        if len(self._queue) >= self.queue_size:
            self._queue.popleft()
            self.dropped += 1
            self._unreported += 1
            if self.full_since is None:
                self.full_since = self._clock.monotonic()
        self._queue.append(message)
        self._wake.set()

    def stalled(self, now: float, timeout: float) -> bool:
        if self.closed.is_set() or self.full_since is None:
            return False
        return now - self.full_since >= timeout

    async def next(self) -> Message | None:
        """The next message to send (a ``Dropped`` notice first after losses); None once closed."""
        while True:
            if self.closed.is_set():
                return None
            if self._unreported or self._queue:
                self.full_since = None  # the client reads: not stuck
            if self._unreported:
                count, self._unreported = self._unreported, 0
                return messages.dropped(count)
            if self._queue:
                return self._queue.popleft()
            self._wake.clear()
            await self._wake.wait()

    def close(self, code: int, reason: str = "") -> None:
        """Ask the connection to close with ``code``; its sender stops taking messages."""
        if self.closed.is_set():
            return
        self.close_code = code
        self.close_reason = reason
        self.closed.set()
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)


class Hub:
    """Connection registry, groups and fan-out of the live dashboard."""

    def __init__(
        self,
        bus: EventBus,
        *,
        clock: Clock,
        snapshot: LiveSnapshot,
        redactor: Redactor,
        health_status: Callable[[], HealthStatus | None] = lambda: None,
        max_connections: int = 100,
        queue_size: int = 100,
        stall_timeout: float = 30.0,
        heartbeat_interval: float = 15.0,
        auth_timeout: float = 5.0,
        strict: bool = False,
        backplane: Backplane | None = None,
        instance: str | None = None,
    ) -> None:
        self.bus = bus
        self.clock = clock
        self.snapshot = snapshot
        self.redactor = redactor
        self.health_status = health_status
        self.max_connections = max_connections
        self.queue_size = queue_size
        self.stall_timeout = stall_timeout
        self.heartbeat_interval = heartbeat_interval
        self.auth_timeout = auth_timeout
        """Seconds a WebSocket has to send ``{"type": "auth"}`` without a token in its URL."""
        self.strict = strict
        self.backplane = backplane
        self.instance = instance
        """This instance's id, on the messages it makes (None: no ``instance`` field)."""
        self._shared = True
        """What clients were last told of the backplane (nothing said means shared)."""
        self.clients: dict[int, HubClient] = {}
        self._ids = itertools.count(1)
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._emptied = asyncio.Event()
        self.errors = 0
        self.kicked = 0

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    # -- clients ------------------------------------------------------------------

    def connect(self, groups: Iterable[Group] = ()) -> HubClient:
        """Register a client (not yet authenticated: it gets nothing until :meth:`admit`)."""
        if len(self.clients) >= self.max_connections:
            raise HubFull(self.max_connections)
        client = HubClient(next(self._ids), queue_size=self.queue_size, clock=self.clock)
        for group in groups:
            client.join(group)
        self.clients[client.ident] = client
        return client

    def admit(self, client: HubClient) -> None:
        """The client is an admin: welcome it with the latest health, then broadcast to it."""
        client.authenticated = True
        welcome: Message = {"type": "Welcome", "groups": messages.group_names(client.groups)}
        if self.instance is not None:
            welcome["instance"] = self.instance
        client.offer(welcome)
        if self.backplane is not None and not self._shared:
            state = self.backplane.state
            client.offer(messages.backplane_state(state.connected, state.since, self.instance))
        status = self.health_status()
        if status is not None and client.wants(Group.HEALTH):
            client.offer(messages.health_status(status, self.clock.now()))

    def disconnect(self, client: HubClient) -> None:
        client.close(client.close_code or GOING_AWAY)
        self.clients.pop(client.ident, None)
        if not self.clients:
            self._emptied.set()

    def broadcast(self, message: Message) -> None:
        """Enqueue ``message`` for every admitted client that wants its group."""
        group = group_of(message)
        now = self.clock.monotonic()
        for client in tuple(self.clients.values()):
            if client.authenticated and client.wants(group):
                client.offer(message)
                if client.stalled(now, self.stall_timeout):
                    self._kick(client)

    def _kick(self, client: HubClient) -> None:
        self.kicked += 1
        log.warning("hub_client_stalled", client=client.ident, dropped=client.dropped)
        client.close(POLICY_VIOLATION, "too slow: messages were not read")

    def check_stalled(self) -> None:
        now = self.clock.monotonic()
        for client in tuple(self.clients.values()):
            if client.stalled(now, self.stall_timeout):
                self._kick(client)

    # -- bus and loops -----------------------------------------------------------------

    def handle(self, message: BusMessage) -> None:
        """Turn one bus message into a broadcast (guarded: a bad payload is logged)."""
        try:
            out = self._translate(message)
            if out is not None:
                if self.instance is not None:
                    out["instance"] = self.instance
                self.broadcast(out)
                if self.backplane is not None:
                    self.backplane.publish(out)
        except Exception:
            if self.strict:
                raise
            self.errors += 1
            log.exception("hub_message_failed", topic=message.topic)

    def _translate(self, message: BusMessage) -> Message | None:
        payload: Any = message.payload
        if message.topic == HEALTH_CHANGED_TOPIC and isinstance(payload, HealthChange):
            return messages.health_change(payload)
        if message.topic == ALERT_EVENT_TOPIC and isinstance(payload, AlertEvent):
            return messages.alert_message(payload)
        if message.topic == SECURITY_TOPIC and isinstance(payload, SecurityEventItem):
            return messages.security_message(payload, self.redactor)
        return None

    def receive(self, message: Message) -> None:
        """A message another instance published on the backplane: to the local clients."""
        try:
            self.broadcast(message)
        except Exception:
            if self.strict:
                raise
            self.errors += 1
            log.exception("hub_remote_message_failed", type=message.get("type"))

    def backplane_changed(self, state: BackplaneState) -> None:
        """Tell every client when the other instances' messages stop (or start again) coming."""
        if state.status is BackplaneStatus.STOPPED or state.connected == self._shared:
            return
        self._shared = state.connected
        self.broadcast(messages.backplane_state(state.connected, state.since, self.instance))

    def take_snapshot(self) -> None:
        snapshot = self.snapshot.take(len(self.clients))
        if self.instance is not None:
            snapshot["instance"] = self.instance
        self.broadcast(snapshot)

    def beat(self) -> None:
        """A ``Heartbeat`` and the latest overall status to everyone; stalled clients go."""
        self.broadcast(messages.heartbeat(self.clock.now()))
        status = self.health_status()
        if status is not None:
            self.broadcast(messages.health_status(status, self.clock.now()))
        self.check_stalled()

    async def _listen(self, subscription: Subscription) -> None:
        async for message in subscription:
            self.handle(message)

    async def _snapshots(self) -> None:
        """A snapshot every interval; with clients, the other instances' figures are read
        first (nobody watching: no reads)."""
        while True:
            await asyncio.sleep(self.snapshot.interval)
            try:
                if self.clients:
                    await self.snapshot.refresh()
                self.take_snapshot()
            except Exception:
                if self.strict:
                    raise
                self.errors += 1
                log.exception("hub_loop_failed", loop="snapshot")

    async def _every(self, seconds: float, action: Callable[[], None], name: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                action()
            except Exception:
                if self.strict:
                    raise
                self.errors += 1
                log.exception("hub_loop_failed", loop=name)

    def start(self) -> None:
        """Subscribe to the bus (once for every client) and start the loops."""
        if self.running:
            return
        if self.backplane is not None:
            self._shared = True
            self.backplane.start(self.receive, self.backplane_changed)
        self._subscription = self.bus.subscribe(
            HEALTH_CHANGED_TOPIC, ALERT_EVENT_TOPIC, SECURITY_TOPIC, maxsize=BUS_QUEUE_SIZE
        )
        self._tasks = [
            asyncio.create_task(self._listen(self._subscription), name="hub-bus"),
            asyncio.create_task(self._snapshots(), name="hub-snapshot"),
            asyncio.create_task(
                self._every(self.heartbeat_interval, self.beat, "heartbeat"),
                name="hub-heartbeat",
            ),
        ]

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the loops and close every client with 1001, waiting (bounded) for them."""
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.backplane is not None:
            await self.backplane.stop()
        for client in tuple(self.clients.values()):
            client.close(GOING_AWAY, "server stopping")
        if self.clients:
            self._emptied.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._emptied.wait()
