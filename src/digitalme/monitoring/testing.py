"""In-memory doubles of the monitoring layer's pluggable parts, for tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from digitalme.monitoring.dashboard.backplane import (
    BackplaneState,
    BackplaneStatus,
    Receiver,
    StateListener,
    decode_envelope,
    encode_envelope,
)
from digitalme.monitoring.dashboard.hub_messages import Message
from digitalme.monitoring.health.model import HealthResult
from digitalme.monitoring.notifiers.errors import DeliveryError
from digitalme.monitoring.notifiers.message import Notification
from digitalme.monitoring.notifiers.protocol import DeliveryReceipt
from digitalme.monitoring.telemetry.items import AnyItem
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket

ItemT = TypeVar("ItemT")


class FakeClock:
    """A clock that moves only when told to; tests advance it instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._now.timestamp()

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        self._now += timedelta(seconds=seconds)
        self._mono += seconds


class InMemorySink:
    """A telemetry sink that keeps what it is given; ``failing`` makes writes raise."""

    name = "memory"

    def __init__(self) -> None:
        self.batches: list[TelemetryBatch] = []
        self.items: list[AnyItem] = []
        self.buckets: dict[tuple[SeriesKey, float], Bucket] = {}
        self.failing = False
        self.attempts = 0
        self.closed = False

    async def write(self, batch: TelemetryBatch) -> None:
        self.attempts += 1
        if self.failing:
            raise ConnectionError("in-memory sink told to fail")
        self.batches.append(batch)
        self.items.extend(batch.items)
        for key, bucket in batch.buckets:
            self.buckets[(key, bucket.start)] = bucket

    async def close(self) -> None:
        self.closed = True

    def of_kind(self, kind: type[ItemT]) -> list[ItemT]:
        return [item for item in self.items if isinstance(item, kind)]


class ScriptedCheck:
    """A health check that answers what it is told and counts its calls.

    ``result`` is returned (after ``delay`` seconds of real time); ``error``, when
    set, is raised instead; ``hang()`` makes every later call wait forever (until
    cancelled), for timeout tests.
    """

    def __init__(
        self, name: str, result: HealthResult | None = None, *, delay: float = 0.0
    ) -> None:
        self.name = name
        self.result = result or HealthResult.healthy(f"{name} is fine")
        self.delay = delay
        self.error: BaseException | None = None
        self.calls = 0
        self.closed = False
        self._hanging = False

    def hang(self) -> None:
        self._hanging = True

    async def check(self) -> HealthResult:
        self.calls += 1
        if self._hanging:
            await asyncio.Event().wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.result

    async def aclose(self) -> None:
        self.closed = True


class RecordingNotifier:
    """A notification channel that keeps what it is sent and fails when told to.

    ``attempts`` holds every notification ``send`` was called with, ``sent`` the
    delivered ones. ``fail(times)`` makes the next ``times`` sends raise a
    :class:`DeliveryError` (``times=None``: until ``recover()``).
    """

    def __init__(self, name: str = "recording") -> None:
        self.name = name
        self.attempts: list[Notification] = []
        self.sent: list[Notification] = []
        self.closed = False
        self._failures_left: int | None = 0
        self._failure = DeliveryError(name, "told to fail", permanent=False)

    def fail(
        self,
        times: int | None = 1,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        reason: str = "told to fail",
    ) -> None:
        self._failures_left = times
        self._failure = DeliveryError(
            self.name, reason, permanent=permanent, retry_after=retry_after
        )

    def recover(self) -> None:
        self._failures_left = 0

    @property
    def keys(self) -> list[str]:
        """Idempotency keys of the delivered notifications, in order."""
        return [notification.key for notification in self.sent]

    async def send(self, notification: Notification) -> DeliveryReceipt:
        self.attempts.append(notification)
        if self._failures_left is None or self._failures_left > 0:
            if self._failures_left is not None:
                self._failures_left -= 1
            failure = self._failure
            raise DeliveryError(
                failure.channel,
                failure.reason,
                permanent=failure.permanent,
                retry_after=failure.retry_after,
            )
        self.sent.append(notification)
        return DeliveryReceipt(self.name, f"recorded #{len(self.sent)}")

    async def aclose(self) -> None:
        self.closed = True


class InMemoryBackplaneNetwork:
    """Several hubs' backplanes in one process: what one publishes, the others receive.

    ``join(instance)`` makes a member (pass it to a ``Hub`` as ``backplane``).
    Delivery is immediate and goes through the real envelope (JSON and its
    checks), so what does not serialise fails here as it would on Redis.
    ``disconnect()`` / ``reconnect()`` simulate an outage for every member:
    listeners are told, and what is published meanwhile is dropped (counted).
    ``inject(data)`` hands raw payload bytes to every member, as a stranger on
    the channel would.
    """

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.members: list[InMemoryBackplane] = []
        self.up = True
        self.sent: list[bytes] = []
        """Every envelope that went over the network, in order."""

    def join(self, instance: str) -> InMemoryBackplane:
        member = InMemoryBackplane(self, instance)
        self.members.append(member)
        return member

    def deliver(self, data: bytes) -> None:
        self.sent.append(data)
        for member in self.members:
            member.accept(data)

    inject = deliver

    def disconnect(self) -> None:
        self.up = False
        for member in self.members:
            member.set_status(BackplaneStatus.DISCONNECTED, error="ConnectionError")

    def reconnect(self) -> None:
        self.up = True
        for member in self.members:
            member.set_status(BackplaneStatus.CONNECTED)


class InMemoryBackplane:
    """One member of an :class:`InMemoryBackplaneNetwork` (a ``Backplane``)."""

    medium = "the in-memory network"

    def __init__(self, network: InMemoryBackplaneNetwork, instance: str) -> None:
        self.network = network
        self.instance = instance
        self.receiver: Receiver | None = None
        self.listener: StateListener | None = None
        self.status = BackplaneStatus.STARTING
        self.since = network.clock.now()
        self.last_error: str | None = None
        self.published = 0
        self.received = 0
        self.dropped = 0
        self.invalid = 0
        self.echoes = 0
        self.reconnects = 0
        self.started = 0
        self.stopped = 0

    @property
    def state(self) -> BackplaneState:
        return BackplaneState(
            status=self.status,
            since=self.since,
            last_error=self.last_error,
            published=self.published,
            received=self.received,
            dropped=self.dropped,
            invalid=self.invalid,
            echoes=self.echoes,
            reconnects=self.reconnects,
        )

    def start(self, receive: Receiver, changed: StateListener) -> None:
        self.receiver = receive
        self.listener = changed
        self.started += 1
        if self.network.up:
            self.set_status(BackplaneStatus.CONNECTED)
        else:
            self.set_status(BackplaneStatus.DISCONNECTED, error="ConnectionError")

    def publish(self, message: Message) -> None:
        if self.status is not BackplaneStatus.CONNECTED:
            self.dropped += 1
            return
        self.published += 1
        self.network.deliver(encode_envelope(self.instance, message))

    async def stop(self) -> None:
        self.stopped += 1
        self.receiver = self.listener = None
        self.status = BackplaneStatus.STOPPED

    def accept(self, data: bytes) -> None:
        if self.status is not BackplaneStatus.CONNECTED:
            return
        decoded = decode_envelope(data)
        if isinstance(decoded, str):
            self.invalid += 1
            return
        origin, message = decoded
        if origin == self.instance:
            self.echoes += 1
            return
        self.received += 1
        if self.receiver is not None:
            self.receiver(message)

    def set_status(self, status: BackplaneStatus, *, error: str | None = None) -> None:
        if status is self.status:
            return
        if status is BackplaneStatus.CONNECTED and self.status is BackplaneStatus.DISCONNECTED:
            self.reconnects += 1
        self.status = status
        self.since = self.network.clock.now()
        if error is not None:
            self.last_error = error
        if self.listener is not None:
            self.listener(self.state)
