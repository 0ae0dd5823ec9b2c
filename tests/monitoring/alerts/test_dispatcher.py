"""The dispatcher: the outbox sent through the channels, retried, dead-lettered, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest_servers import BACKENDS, backend_url
from digitalme.monitoring.alerts import (
    Alert,
    AlertCategory,
    AlertEngine,
    DeliveryStatus,
    InMemoryAlertStore,
    Severity,
    SqlAlertStore,
)
from digitalme.monitoring.alerts.store import AlertStore, Delivery
from digitalme.monitoring.bus import EventBus
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.notifiers import (
    DeliveryError,
    DeliveryReceipt,
    Notification,
    NotificationKind,
    Notifier,
)
from digitalme.monitoring.notifiers.dispatcher import Dispatcher, backoff_delay, notification_of
from digitalme.monitoring.notifiers.slack import SlackNotifier
from digitalme.monitoring.storage import upgrade_async
from digitalme.monitoring.storage.engine import create_engine
from digitalme.monitoring.testing import FakeClock, RecordingNotifier
from digitalme.settings import DeliverySettings, SlackSettings, load_settings
from monitoring.alerts.helpers import EngineFactory, Routes
from polling import eventually
from receivers import HttpReceiver, Reply

DEADLINE = 10.0  # seconds; a bound for waiting, never a timing assertion
SLACK_PATH = "/services/T0001/B0001/XXslackTOKENxx"


def longest(low: float, high: float) -> float:
    """A jitter that always picks the longest delay: retries land at known times."""
    return high


MakeDispatcher = Callable[..., Dispatcher]


@pytest.fixture
def slack() -> RecordingNotifier:
    return RecordingNotifier("slack")


@pytest.fixture
def email() -> RecordingNotifier:
    return RecordingNotifier("email")


@pytest.fixture
def make_dispatcher(
    memory_store: InMemoryAlertStore,
    clock: FakeClock,
    slack: RecordingNotifier,
    email: RecordingNotifier,
) -> MakeDispatcher:
    def make(
        *,
        store: AlertStore | None = None,
        notifiers: dict[str, Notifier] | None = None,
        **settings: Any,
    ) -> Dispatcher:
        return Dispatcher(
            memory_store if store is None else store,
            {"slack": slack, "email": email} if notifiers is None else notifiers,
            clock,
            DeliverySettings(**settings),
            uniform=longest,
            strict=True,
        )

    return make


async def fire(engine: AlertEngine, severity: Severity = Severity.HIGH) -> Alert:
    return await engine.raise_alert("Disk full", "db-1 has 1% free", severity, AlertCategory.ERROR)


def by_channel(deliveries: list[Delivery], channel: str) -> list[Delivery]:
    return [delivery for delivery in deliveries if delivery.channel == channel]


# -- the basics --------------------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter_and_honours_retry_after() -> None:
    assert [backoff_delay(n, base=1, cap=300, uniform=longest) for n in (1, 2, 3, 9, 10)] == [
        1,
        2,
        4,
        256,
        300,
    ]
    assert backoff_delay(3, base=1, cap=300, uniform=lambda low, high: low) == 0
    assert backoff_delay(1, base=1, cap=300, retry_after=30, uniform=longest) == 30
    assert backoff_delay(9, base=1, cap=300, retry_after=30, uniform=longest) == 256
    assert backoff_delay(10_000, base=1, cap=300, uniform=longest) == 300


async def test_each_delivery_is_sent_once_under_its_idempotency_key(
    make_engine: EngineFactory,
    make_dispatcher: MakeDispatcher,
    memory_store: InMemoryAlertStore,
    slack: RecordingNotifier,
    email: RecordingNotifier,
) -> None:
    engine = make_engine()
    alert = await fire(engine)
    dispatcher = make_dispatcher()

    assert await dispatcher.run_once() == 2
    assert await dispatcher.run_once() == 0

    deliveries = await memory_store.deliveries(alert_id=alert.id)
    assert [d.status for d in deliveries] == [DeliveryStatus.SENT] * 2
    assert slack.keys == [by_channel(deliveries, "slack")[0].idempotency_key]
    assert email.keys == [by_channel(deliveries, "email")[0].idempotency_key]
    [notification] = slack.sent
    assert notification.kind is NotificationKind.FIRED
    assert (notification.title, notification.alert_id) == ("Disk full", alert.id)
    assert notification.severity is Severity.HIGH
    detail = await memory_store.get(alert.id)
    assert detail is not None
    assert [(a.outcome, a.detail) for a in detail.attempts] == [
        ("sent", "recorded #1"),
        ("sent", "recorded #1"),
    ]
    assert all(a.latency_ms is not None for a in detail.attempts)


async def test_the_payload_becomes_the_notification(
    make_engine: EngineFactory, memory_store: InMemoryAlertStore, clock: FakeClock
) -> None:
    engine = make_engine()
    alert = await engine.raise_alert(
        "t", "d", Severity.CRITICAL, AlertCategory.SECURITY, {"n": 3}, ["api"]
    )
    clock.advance(60)
    await engine.resolve(alert.id, "ops@example.com")
    fired, _, resolved, _ = await memory_store.deliveries(alert_id=alert.id)
    notice = notification_of(resolved)
    assert notice.key == resolved.idempotency_key
    assert notice.kind is NotificationKind.RESOLVED
    assert notice.resolved_by == "ops@example.com"
    assert notice.ends_at == clock.now()
    assert notice.starts_at == clock.now() - timedelta(seconds=60)
    assert dict(notice.properties) == {"n": "3"}
    assert notice.affected_components == ("api",)
    assert notification_of(fired).kind is NotificationKind.FIRED


# -- failures ----------------------------------------------------------------------------


async def test_retried_with_backoff_until_the_channel_recovers(
    make_engine: EngineFactory,
    make_dispatcher: MakeDispatcher,
    memory_store: InMemoryAlertStore,
    clock: FakeClock,
    slack: RecordingNotifier,
) -> None:
    engine = make_engine()
    alert = await fire(engine)
    dispatcher = make_dispatcher()
    slack.fail(3, reason="HTTP 500")

    for delay in (1, 2, 4):  # the longest jitter: base 1 s, doubling
        await dispatcher.run_once()
        [delivery] = by_channel(await memory_store.deliveries(), "slack")
        assert delivery.status is DeliveryStatus.PENDING
        assert delivery.next_attempt_at == clock.now() + timedelta(seconds=delay)
        assert delivery.last_error == "slack: HTTP 500"
        clock.advance(delay - 0.001)
        assert await dispatcher.run_once() == 0  # not due yet
        clock.advance(0.001)
    await dispatcher.run_once()

    [delivery] = by_channel(await memory_store.deliveries(), "slack")
    assert delivery.status is DeliveryStatus.SENT
    assert delivery.attempts == 4
    assert len(slack.sent) == 1
    assert len(slack.attempts) == 4
    assert len(set(n.key for n in slack.attempts)) == 1  # the same key on every retry
    detail = await memory_store.get(alert.id)
    assert detail is not None
    slack_attempts = [a for a in detail.attempts if a.delivery_id == delivery.id]
    assert [a.outcome for a in slack_attempts] == ["retry", "retry", "retry", "sent"]
    assert dispatcher.retried == 3


async def test_retry_after_is_honoured_when_longer_than_the_backoff(
    make_engine: EngineFactory,
    make_dispatcher: MakeDispatcher,
    memory_store: InMemoryAlertStore,
    clock: FakeClock,
    slack: RecordingNotifier,
) -> None:
    await fire(make_engine())
    dispatcher = make_dispatcher()
    slack.fail(1, retry_after=120, reason="HTTP 429")
    await dispatcher.run_once()
    [delivery] = by_channel(await memory_store.deliveries(), "slack")
    assert delivery.next_attempt_at == clock.now() + timedelta(seconds=120)
    clock.advance(119)
    await dispatcher.run_once()
    assert slack.sent == []
    clock.advance(1)
    await dispatcher.run_once()
    assert len(slack.sent) == 1


async def test_a_permanent_refusal_is_dead_lettered_with_its_reason(
    make_engine: EngineFactory,
    make_dispatcher: MakeDispatcher,
    memory_store: InMemoryAlertStore,
    clock: FakeClock,
    slack: RecordingNotifier,
    email: RecordingNotifier,
) -> None:
    await fire(make_engine())
    dispatcher = make_dispatcher()
    slack.fail(permanent=True, reason="HTTP 404: no_service")
    await dispatcher.run_once()
    [delivery] = by_channel(await memory_store.deliveries(), "slack")
    assert delivery.status is DeliveryStatus.DEAD
    assert delivery.last_error == "slack: HTTP 404: no_service"
    clock.advance(3600)
    await dispatcher.run_once()
    assert len(slack.attempts) == 1  # never tried again
    assert len(email.sent) == 1
    assert memory_store.attempts[-1].outcome in ("dead", "sent")
    assert [a.outcome for a in memory_store.attempts if a.delivery_id == delivery.id] == ["dead"]


async def test_dead_after_max_attempts(
    make_engine: EngineFactory,
    make_dispatcher: MakeDispatcher,
    memory_store: InMemoryAlertStore,
    clock: FakeClock,
    slack: RecordingNotifier,
) -> None:
    await fire(make_engine())
    dispatcher = make_dispatcher(max_attempts=3, backoff_max=10)
    slack.fail(None, reason="HTTP 503")
    for _ in range(5):
        await dispatcher.run_once()
        clock.advance(10)
    [delivery] = by_channel(await memory_store.deliveries(), "slack")
    assert delivery.status is DeliveryStatus.DEAD
    assert delivery.attempts == 3
    assert delivery.last_error == "gave up after 3 attempts: slack: HTTP 503"
    assert len(slack.attempts) == 3


async def test_a_channel_without_a_notifier_is_dead_lettered(
    make_engine: EngineFactory,
    make_dispatcher: MakeDispatcher,
    memory_store: InMemoryAlertStore,
    slack: RecordingNotifier,
) -> None:
    await fire(make_engine())
    dispatcher = make_dispatcher(notifiers={"slack": slack})  # email switched off since
    await dispatcher.run_once()
    [delivery] = by_channel(await memory_store.deliveries(), "email")
    assert delivery.status is DeliveryStatus.DEAD
    assert delivery.last_error == "channel 'email' is not configured (not enabled)"
    assert len(slack.sent) == 1


async def test_a_broken_payload_is_dead_lettered(
    make_engine: EngineFactory,
    make_dispatcher: MakeDispatcher,
    memory_store: InMemoryAlertStore,
) -> None:
    await fire(make_engine())
    from dataclasses import replace

    first = memory_store.outbox[1]
    memory_store.outbox[1] = replace(first, payload={**first.payload, "severity": "Huge"})
    await make_dispatcher().run_once()
    assert memory_store.outbox[1].status is DeliveryStatus.DEAD
    assert memory_store.outbox[1].last_error == "unreadable payload: ValueError"


# -- order and independence ----------------------------------------------------------------


async def test_a_resolved_notice_waits_for_its_fired_notice(
    make_engine: EngineFactory,
    make_dispatcher: MakeDispatcher,
    memory_store: InMemoryAlertStore,
    clock: FakeClock,
    slack: RecordingNotifier,
    email: RecordingNotifier,
) -> None:
    engine = make_engine()
    alert = await fire(engine)
    dispatcher = make_dispatcher()
    slack.fail(None, reason="HTTP 500")
    await dispatcher.run_once()  # fired: email sent, Slack to retry in 1 s
    await engine.resolve(alert.id, "ops")
    await dispatcher.run_once()  # resolved: email sent, Slack must wait

    assert [n.kind for n in email.sent] == [NotificationKind.FIRED, NotificationKind.RESOLVED]
    assert [n.kind for n in slack.attempts] == [NotificationKind.FIRED]
    waiting = by_channel(await memory_store.deliveries(), "slack")[1]
    assert waiting.status is DeliveryStatus.PENDING
    assert waiting.attempts == 0  # deferring is not an attempt
    assert waiting.last_error is not None
    assert "waiting for delivery" in waiting.last_error

    slack.recover()
    clock.advance(1)
    await dispatcher.run_once()
    await dispatcher.run_once()
    assert [n.kind for n in slack.sent] == [NotificationKind.FIRED, NotificationKind.RESOLVED]
    assert len(slack.attempts) == 3


async def test_a_resolved_notice_follows_a_dead_lettered_fired_one(
    make_engine: EngineFactory,
    make_dispatcher: MakeDispatcher,
    memory_store: InMemoryAlertStore,
    slack: RecordingNotifier,
) -> None:
    engine = make_engine()
    alert = await fire(engine)
    await engine.resolve(alert.id, "ops")
    slack.fail(1, permanent=True, reason="HTTP 400: invalid_payload")
    await make_dispatcher().run_once()
    statuses = [d.status for d in by_channel(await memory_store.deliveries(), "slack")]
    assert statuses == [DeliveryStatus.DEAD, DeliveryStatus.SENT]


class HangingNotifier:
    """A channel whose sends wait until ``release`` is set (a receiver that does not answer)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.release = asyncio.Event()
        self.started = 0

    async def send(self, notification: Notification) -> DeliveryReceipt:
        self.started += 1
        await self.release.wait()
        raise DeliveryError(self.name, "no answer within 10 s", permanent=False)

    async def aclose(self) -> None:
        pass


async def test_a_hanging_channel_does_not_delay_another(
    make_engine: EngineFactory,
    make_dispatcher: MakeDispatcher,
    memory_store: InMemoryAlertStore,
    email: RecordingNotifier,
) -> None:
    engine = make_engine()
    hanging = HangingNotifier("slack")
    dispatcher = make_dispatcher(notifiers={"slack": hanging, "email": email})
    await fire(engine)
    await dispatcher.dispatch()
    await eventually(lambda: len(email.sent) == 1, timeout=DEADLINE, what="the email")
    second = await fire(engine)  # a second alert while Slack still hangs
    await dispatcher.dispatch()
    await eventually(lambda: len(email.sent) == 2, timeout=DEADLINE, what="the second email")
    assert hanging.started == 2
    assert email.sent[1].alert_id == second.id
    hanging.release.set()
    await dispatcher.drain()
    statuses = [d.status for d in by_channel(await memory_store.deliveries(), "slack")]
    assert statuses == [DeliveryStatus.PENDING] * 2


# -- restarts, on the durable store ------------------------------------------------------


@pytest.fixture(params=BACKENDS)
async def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlAlertStore]:
    url = backend_url(request, str(tmp_path / "telemetry.db"))
    await upgrade_async(url)
    store = SqlAlertStore(create_engine(url))
    try:
        yield store
    finally:
        await store.engine.dispose()


async def test_a_claim_left_by_a_dead_process_is_sent_after_the_lease_exactly_once(
    make_engine: EngineFactory,
    make_dispatcher: MakeDispatcher,
    sql_store: SqlAlertStore,
    clock: FakeClock,
    slack: RecordingNotifier,
    email: RecordingNotifier,
) -> None:
    engine = make_engine(store=sql_store)
    alert = await fire(engine)
    # The process that claimed them died before sending anything.
    claimed = await sql_store.claim_due_deliveries(clock.now(), 10, lease=60)
    assert len(claimed) == 2

    restarted = make_dispatcher(store=sql_store)
    await restarted.run_once()
    assert slack.attempts == []
    assert email.attempts == []
    clock.advance(60)
    await restarted.run_once()
    await restarted.run_once()
    clock.advance(600)
    await restarted.run_once()

    assert len(slack.sent) == 1
    assert len(email.sent) == 1
    assert len(slack.attempts) == 1
    assert len(email.attempts) == 1
    deliveries = await sql_store.deliveries(alert_id=alert.id)
    assert [d.status for d in deliveries] == [DeliveryStatus.SENT] * 2
    assert slack.keys == [by_channel(deliveries, "slack")[0].idempotency_key]
    detail = await sql_store.get(alert.id)
    assert detail is not None
    assert [a.outcome for a in detail.attempts] == ["sent", "sent"]


async def test_retries_and_order_on_the_durable_store(
    make_engine: EngineFactory,
    make_dispatcher: MakeDispatcher,
    sql_store: SqlAlertStore,
    clock: FakeClock,
    slack: RecordingNotifier,
) -> None:
    engine = make_engine(store=sql_store)
    alert = await fire(engine)
    slack.fail(2, reason="HTTP 500")
    dispatcher = make_dispatcher(store=sql_store)
    await dispatcher.run_once()
    await engine.resolve(alert.id, "ops")
    for _ in range(4):
        await dispatcher.run_once()
        clock.advance(2)
    assert [n.kind for n in slack.sent] == [NotificationKind.FIRED, NotificationKind.RESOLVED]
    slack_deliveries = by_channel(await sql_store.deliveries(alert_id=alert.id), "slack")
    assert [d.attempts for d in slack_deliveries] == [3, 1]


# -- through Monitoring and a real Slack receiver --------------------------------------------


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as http:
        yield http


async def test_a_real_slack_receiver_failing_then_recovering(
    make_engine: EngineFactory,
    memory_store: InMemoryAlertStore,
    clock: FakeClock,
    receiver: HttpReceiver,
) -> None:
    settings = SlackSettings.model_validate(
        {"enabled": True, "webhook_url": receiver.url(SLACK_PATH), "timeout": 5}
    )
    notifier = SlackNotifier(settings, clock=clock)
    dispatcher = Dispatcher(memory_store, {"slack": notifier}, clock, uniform=longest, strict=True)
    engine = make_engine()
    engine.route = Routes(channels=["slack"])
    receiver.script(Reply(500, b"oops"), times=2)
    receiver.script(Reply(429, b"rate_limited", {"retry-after": "30"}))
    alert = await fire(engine)
    try:
        await dispatcher.run_once()
        clock.advance(1)
        await dispatcher.run_once()
        [delivery] = await memory_store.deliveries()
        assert delivery.next_attempt_at == clock.now() + timedelta(seconds=2)
        clock.advance(2)
        await dispatcher.run_once()  # 429: Retry-After 30 s, longer than the backoff (4 s)
        [delivery] = await memory_store.deliveries()
        assert delivery.next_attempt_at == clock.now() + timedelta(seconds=30)
        assert delivery.last_error == "slack: HTTP 429: rate_limited (retry after 30 s)"
        clock.advance(30)
        await dispatcher.run_once()
        await engine.resolve(alert.id, "ops")
        await dispatcher.run_once()
    finally:
        await notifier.aclose()

    requests = receiver.requests
    assert len(requests) == 5
    texts = [request.json()["text"] for request in requests]
    assert texts == ["🚨 Alert: Disk full"] * 4 + ["🟢 Alert Resolved: Disk full"]
    detail = await memory_store.get(alert.id)
    assert detail is not None
    assert [a.outcome for a in detail.attempts] == ["retry", "retry", "retry", "sent", "sent"]
    assert [a.detail for a in detail.attempts][-1] == "HTTP 200"
    assert all(SLACK_PATH not in a.detail for a in detail.attempts)  # the URL is the secret


async def test_a_security_event_reaches_slack_without_waiting_for_a_poll(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    settings = load_settings(
        server={"data_dir": str(tmp_path)},
        notifications={
            "slack": {"enabled": True, "webhook_url": receiver.url(SLACK_PATH)},
            "delivery": {"poll_interval": 30},  # only the bus can wake it in time
        },
    )
    monitoring = Monitoring(settings, strict=True)
    assert monitoring.dispatcher is not None
    await monitoring.start()
    try:
        await eventually(lambda: monitoring.dispatcher.passes > 0, timeout=DEADLINE, what="start")  # type: ignore[union-attr]
        monitoring.client.track_security_event("SqlInjection", "' OR 1=1", client_ip="192.0.2.9")
        await eventually(lambda: len(receiver.requests) == 1, timeout=DEADLINE, what="Slack")
    finally:
        await monitoring.stop()
    [request] = receiver.requests
    assert request.json()["attachments"][0]["color"] == "danger"
    assert not monitoring.dispatcher.running


async def test_monitoring_starts_the_dispatcher_after_the_engine_and_stops_it(
    tmp_path: Path,
) -> None:
    monitoring = Monitoring(load_settings(server={"data_dir": str(tmp_path)}))
    assert monitoring.dispatcher is not None
    assert monitoring.notifiers == {}
    await monitoring.start()
    assert monitoring.dispatcher.running
    await monitoring.stop()
    assert not monitoring.dispatcher.running
    assert Monitoring(load_settings(alerting={"enabled": False})).dispatcher is None


def test_the_bus_wakes_a_dispatcher(memory_store: InMemoryAlertStore, clock: FakeClock) -> None:
    # The subscription is made in start(), inside the loop; construction needs no loop.
    Dispatcher(memory_store, {}, clock, bus=EventBus())
