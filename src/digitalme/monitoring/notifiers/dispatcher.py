"""The dispatcher: sends the alert store's outbox through the channels (delivery).

The engine writes one outbox delivery per alert event and channel, in the same
transaction as the alert's state change, and publishes the event on the bus
topic ``alert.event`` after the commit. The dispatcher

* wakes at once on that topic (a critical security alert reaches Slack in a few
  milliseconds), when a retry it scheduled comes due, and also every
  ``notifications.delivery.poll_interval`` (deliveries written by another
  instance, claims left behind by a process that died: each look is a store
  transaction, so it is not frequent);
* claims due deliveries (:meth:`~..alerts.store.AlertStore.claim_due_deliveries`):
  each is held for ``claim_lease`` seconds, so a crash mid-send is retried once
  the lease has run out, after a restart or by another instance;
* builds a :class:`~.message.Notification` from the delivery's payload, with the
  delivery's idempotency key as ``Notification.key`` (the webhook's
  ``Idempotency-Key`` header, the email's Message-ID): a send retried after a
  crash can be recognised by the receiver;
* records every attempt (time, outcome, latency, the receipt or the error's
  secret-free reason), then marks the delivery ``sent``, ``dead`` (a permanent
  refusal, ``max_attempts`` reached, a channel that is no longer configured, an
  unreadable payload) or ``pending`` again for a retry after an exponential
  backoff with full jitter (``backoff_base`` * 2^(attempt - 1), at most
  ``backoff_max``), or after the receiver's ``Retry-After`` when that is longer.

**Order.** The deliveries of one alert to one channel are sent in the order
they were written: a resolved notice waits until its firing notice has been
sent or dead-lettered (it is deferred, without counting an attempt, to when
the earlier one is next due). Channels are independent: each (alert, channel)
chain runs on its own, so a Slack outage or a hanging SMTP server never delays
the other channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from digitalme.monitoring.alerts.engine import ALERT_EVENT_TOPIC
from digitalme.monitoring.alerts.store import (
    AlertStore,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
)
from digitalme.monitoring.bus import EventBus, Subscription
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.notifiers.errors import DeliveryError
from digitalme.monitoring.notifiers.message import Notification, NotificationKind
from digitalme.monitoring.notifiers.protocol import Notifier
from digitalme.monitoring.telemetry.items import Severity
from digitalme.settings import DeliverySettings

__all__ = ["Dispatcher", "backoff_delay", "notification_of"]

log = structlog.get_logger("digitalme.monitoring.notifiers")

MAX_STORE_RETRY_DELAY = 5.0
"""Longest pause, in seconds, between looks at a store that is down."""
STOP_GRACE = 5.0
"""Seconds :meth:`Dispatcher.stop` lets sends in flight finish (the rest are retried later)."""
WAKE_QUEUE_SIZE = 1000


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds before retry number ``attempt`` (1 after the first failure).

    Full jitter: uniform in [0, min(cap, base * 2^(attempt - 1))], so that many
    deliveries failing together do not retry together; never sooner than the
    receiver's ``retry_after``.
    """
    ceiling = min(cap, base * math.pow(2.0, min(attempt - 1, 64)))
    delay = uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def notification_of(delivery: Delivery) -> Notification:
    """The :class:`Notification` a delivery's payload describes, under its idempotency key.

    Raises ``ValueError`` (or ``KeyError``, ``TypeError``) for a payload it cannot read.
    """
    payload: Mapping[str, Any] = delivery.payload
    starts_at = _time(payload["starts_at"])
    assert starts_at is not None
    value = payload.get("value")
    threshold = payload.get("threshold")
    return Notification(
        key=delivery.idempotency_key,
        kind=NotificationKind(payload["kind"]),
        alert_id=str(payload["alert_id"]),
        fingerprint=str(payload.get("fingerprint", "")),
        title=str(payload["title"]),
        description=str(payload.get("description", "")),
        severity=Severity(payload["severity"]),
        category=str(payload["category"]),
        starts_at=starts_at,
        ends_at=_time(payload.get("ends_at")),
        value=None if value is None else float(value),
        threshold=None if threshold is None else float(threshold),
        labels={str(k): str(v) for k, v in dict(payload.get("labels") or {}).items()},
        properties={str(k): str(v) for k, v in dict(payload.get("properties") or {}).items()},
        affected_components=tuple(str(c) for c in payload.get("affected_components") or ()),
        rule_id=payload.get("rule_id"),
        resolved_by=payload.get("resolved_by"),
        count=int(payload.get("count") or 1),
    )


ChainKey = tuple[str, str]  # (alert id, channel)


class Dispatcher:
    """Sends due outbox deliveries through ``notifiers`` (keyed by channel name)."""

    def __init__(
        self,
        store: AlertStore,
        notifiers: Mapping[str, Notifier],
        clock: Clock,
        settings: DeliverySettings | None = None,
        bus: EventBus | None = None,
        *,
        uniform: Callable[[float, float], float] = random.uniform,
        may_send: Callable[[], bool] | None = None,
        strict: bool = False,
    ) -> None:
        self.store = store
        # several instances: whether this one still leads (a paused, deposed leader must
        # not send what the new one will send)
        self.may_send = may_send
        self.notifiers = dict(notifiers)
        self.clock = clock
        self.settings = settings or DeliverySettings()
        self.bus = bus
        self.strict = strict  # tests: an internal error is raised, not only counted
        self._uniform = uniform
        self._chains: dict[ChainKey, deque[Delivery]] = {}
        self._chain_tasks: dict[ChainKey, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._timers: set[asyncio.TimerHandle] = set()  # wake-ups for retries we scheduled
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._failing = False
        # counters (for tests, metrics and the API)
        self.sent = 0
        self.retried = 0
        self.dead = 0
        self.deferred = 0
        self.withheld = 0
        self.errors = 0
        self.passes = 0

    # -- lifecycle ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def in_flight(self) -> int:
        """Deliveries claimed by this dispatcher and not finished yet."""
        return sum(len(queue) for queue in self._chains.values())

    async def start(self) -> None:
        """Listen for alert events and look at the outbox in the background."""
        if self.running:
            return
        if self.bus is not None and self._subscription is None:
            self._subscription = self.bus.subscribe(ALERT_EVENT_TOPIC, maxsize=WAKE_QUEUE_SIZE)
            self._listener = asyncio.create_task(
                self._listen(self._subscription), name="dispatcher-wake"
            )
        self._wake.set()  # a first look at once: what was pending before a restart
        self._task = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self) -> None:
        """Stop claiming; let sends in flight finish for up to :data:`STOP_GRACE` seconds.

        A send cut short stays claimed and is sent again once its lease has run out.
        """
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in (self._task, self._listener):
            if task is not None:
                task.cancel()
                await asyncio.wait({task})
        self._task = self._listener = None
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        await self.drain(STOP_GRACE)
        for task in list(self._chain_tasks.values()):
            task.cancel()
        if self._chain_tasks:
            await asyncio.wait(set(self._chain_tasks.values()))

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the sends in flight are finished (at most ``timeout`` seconds).

        With ``strict``, an internal error of a finished send is raised here.
        """
        tasks = set(self._chain_tasks.values())
        if not tasks:
            return
        done, _ = await asyncio.wait(tasks, timeout=timeout)
        for task in done:
            if not task.cancelled() and (error := task.exception()) is not None and self.strict:
                raise error

    def wake(self) -> None:
        """Look at the outbox now (the bus does this on every alert event)."""
        self._wake.set()

    def _wake_at(self, when: datetime) -> None:
        """Look at the outbox again when a retry this dispatcher scheduled comes due,
        instead of polling for it often."""
        delay = max((when - self.clock.now()).total_seconds(), 0.0)
        timer = asyncio.get_running_loop().call_later(delay, self._timer_fired)
        self._timers.add(timer)

    def _timer_fired(self) -> None:
        now = asyncio.get_running_loop().time()
        self._timers = {timer for timer in self._timers if timer.when() > now}
        self._wake.set()

    async def _listen(self, subscription: Subscription) -> None:
        while True:
            await subscription.get()
            self._wake.set()

    async def _run(self) -> None:
        delay = self.settings.poll_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()
            try:
                await self.dispatch()
                delay = self.settings.poll_interval
                if self._failing:
                    self._failing = False
                    log.info("dispatcher_recovered", errors=self.errors)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                delay = min(max(delay * 2, self.settings.poll_interval), MAX_STORE_RETRY_DELAY)
                if not self._failing:  # one line per outage
                    self._failing = True
                    log.warning("dispatcher_store_unavailable", error=type(exc).__name__)

    # -- one pass ----------------------------------------------------------------------

    async def dispatch(self) -> int:
        """Claim what is due now and start sending it; returns how many were claimed.

        Sends run in the background (one chain per alert and channel); :meth:`drain`
        waits for them.
        """
        room = self.settings.batch_size - self.in_flight
        if room <= 0:
            return 0
        claimed = await self.store.claim_due_deliveries(
            self.clock.now(), room, lease=self.settings.claim_lease
        )
        self.passes += 1
        for delivery in claimed:  # oldest first
            key = (delivery.alert_id, delivery.channel)
            queue = self._chains.setdefault(key, deque())
            queue.append(delivery)
            if key not in self._chain_tasks:
                self._chain_tasks[key] = asyncio.create_task(
                    self._chain(key, queue), name=f"dispatch-{delivery.channel}"
                )
        return len(claimed)

    async def run_once(self) -> int:
        """One pass, waiting for its sends to finish (tests and the command line)."""
        claimed = await self.dispatch()
        await self.drain()
        return claimed

    async def _chain(self, key: ChainKey, queue: deque[Delivery]) -> None:
        try:
            while queue:
                delivery = queue[0]
                try:
                    await self._deliver(delivery)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # The store failed while recording: the claim runs out and it is retried.
                    self.errors += 1
                    log.exception("delivery_bookkeeping_failed", delivery=delivery.id)
                    if self.strict:
                        raise
                finally:
                    queue.popleft()
        finally:
            self._chains.pop(key, None)
            self._chain_tasks.pop(key, None)

    async def _blocker(self, delivery: Delivery) -> Delivery | None:
        """An earlier unfinished delivery of the same alert to the same channel, if any."""
        earlier = [
            other
            for other in await self.store.deliveries(alert_id=delivery.alert_id)
            if other.channel == delivery.channel
            and other.id < delivery.id
            and other.status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
        ]
        return earlier[0] if earlier else None

    async def _deliver(self, delivery: Delivery) -> None:
        blocker = await self._blocker(delivery)
        now = self.clock.now()
        if blocker is not None:
            self.deferred += 1
            when = max(blocker.next_attempt_at, now)
            await self.store.mark_retry(
                delivery.id,
                when,
                f"waiting for delivery {blocker.id} (an earlier notice of this alert)",
            )
            self._wake_at(when)
            return
        notifier = self.notifiers.get(delivery.channel)
        if notifier is None:
            reason = f"channel {delivery.channel!r} is not configured (not enabled)"
            await self._finish_dead(delivery, reason, now, latency=None)
            return
        try:
            notification = notification_of(delivery)
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            reason = f"unreadable payload: {type(exc).__name__}"
            await self._finish_dead(delivery, reason, now, latency=None)
            return
        if self.may_send is not None and not self.may_send():
            self.withheld += 1  # still claimed: the leader sends it once the claim runs out
            return
        started = self.clock.monotonic()
        try:
            receipt = await notifier.send(notification)
        except DeliveryError as exc:
            latency = (self.clock.monotonic() - started) * 1000.0
            await self._failed(delivery, exc, latency)
            return
        except Exception as exc:
            # A channel's bug: counted and retried (the message may hold a URL: not kept).
            self.errors += 1
            log.exception("notifier_failed", channel=delivery.channel, delivery=delivery.id)
            if self.strict:
                raise
            latency = (self.clock.monotonic() - started) * 1000.0
            error = DeliveryError(
                delivery.channel, f"unexpected error: {type(exc).__name__}", permanent=False
            )
            await self._failed(delivery, error, latency)
            return
        latency = (self.clock.monotonic() - started) * 1000.0
        at = self.clock.now()
        await self.store.record_attempt(
            DeliveryAttempt(
                delivery_id=delivery.id,
                at=at,
                outcome=str(DeliveryStatus.SENT),
                latency_ms=latency,
                detail=receipt.detail,
            )
        )
        await self.store.mark_sent(delivery.id, at)
        self.sent += 1

    async def _failed(self, delivery: Delivery, error: DeliveryError, latency: float) -> None:
        at = self.clock.now()
        attempt = delivery.attempts + 1
        reason = str(error)
        if error.permanent:
            await self._finish_dead(delivery, reason, at, latency=latency)
            return
        if attempt >= self.settings.max_attempts:
            reason = f"gave up after {attempt} attempts: {reason}"
            await self._finish_dead(delivery, reason, at, latency=latency)
            return
        delay = backoff_delay(
            attempt,
            base=self.settings.backoff_base,
            cap=self.settings.backoff_max,
            retry_after=error.retry_after,
            uniform=self._uniform,
        )
        await self.store.record_attempt(
            DeliveryAttempt(
                delivery_id=delivery.id,
                at=at,
                outcome="retry",
                latency_ms=latency,
                detail=reason,
            )
        )
        await self.store.mark_retry(delivery.id, at + timedelta(seconds=delay), reason)
        self._wake_at(at + timedelta(seconds=delay))
        self.retried += 1
        if attempt == 1:  # later ones are in the delivery's attempts
            log.info(
                "delivery_retry",
                channel=delivery.channel,
                delivery=delivery.id,
                reason=reason,
                retry_in=round(delay, 3),
            )

    async def _finish_dead(
        self, delivery: Delivery, reason: str, at: datetime, *, latency: float | None
    ) -> None:
        await self.store.record_attempt(
            DeliveryAttempt(
                delivery_id=delivery.id,
                at=at,
                outcome=str(DeliveryStatus.DEAD),
                latency_ms=latency,
                detail=reason,
            )
        )
        await self.store.mark_dead(delivery.id, reason, at)
        self.dead += 1
        log.warning("delivery_dead", channel=delivery.channel, delivery=delivery.id, reason=reason)
