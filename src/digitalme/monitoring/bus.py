"""One small publish/subscribe bus for everything that moves between parts.

Critical security events, health changes, alert events and metric snapshots all
travel here. Each subscriber has a bounded queue: a slow subscriber loses its
oldest messages (counted), it never blocks the publisher or the others.
Publishing is synchronous and cheap, so it can be called from the request path.
A Redis-backed implementation for several instances comes with scale-out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class BusMessage:
    topic: str
    payload: Any


@dataclass(eq=False)
class Subscription:
    """A subscriber's bounded queue; iterate it, and close it when done."""

    bus: EventBus
    topics: frozenset[str]
    maxsize: int
    queue: asyncio.Queue[BusMessage] = field(init=False)
    loop: asyncio.AbstractEventLoop = field(init=False)
    dropped: int = 0

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.maxsize)
        self.loop = asyncio.get_running_loop()

    def offer(self, message: BusMessage) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(message)

    async def get(self) -> BusMessage:
        return await self.queue.get()

    async def __aiter__(self) -> AsyncIterator[BusMessage]:
        while True:
            yield await self.queue.get()

    def close(self) -> None:
        self.bus.unsubscribe(self)


class EventBus:
    """In-process bus. Topics are plain strings (``security.critical``, ``health.changed``)."""

    def __init__(self, default_queue_size: int = 1000) -> None:
        self._default_size = default_queue_size
        self._subscriptions: list[Subscription] = []
        self.published = 0

    def subscribe(self, *topics: str, maxsize: int | None = None) -> Subscription:
        """Subscribe (from inside the event loop) to one or more topics."""
        subscription = Subscription(self, frozenset(topics), maxsize or self._default_size)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, topic: str, payload: Any) -> None:
        """Deliver to every subscriber of ``topic``; never blocks, never raises for a full queue."""
        message = BusMessage(topic, payload)
        self.published += 1
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # called from a thread without a loop
            current = None
        for subscription in tuple(self._subscriptions):
            if topic not in subscription.topics:
                continue
            if subscription.loop is current:
                subscription.offer(message)
            elif not subscription.loop.is_closed():
                subscription.loop.call_soon_threadsafe(subscription.offer, message)
