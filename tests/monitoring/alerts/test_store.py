"""The durable alert store on SQLite and PostgreSQL, and restarts of the engine on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from conftest_servers import BACKENDS, backend_url
from digitalme.monitoring.alerts import (
    Alert,
    AlertCategory,
    AlertChanges,
    AlertEvent,
    AlertEventKind,
    AlertQuery,
    AlertState,
    DeliveryAttempt,
    DeliveryStatus,
    NewDelivery,
    Severity,
    Silence,
    SqlAlertStore,
    StoredRule,
)
from digitalme.monitoring.alerts.memory import InMemoryAlertStore
from digitalme.monitoring.alerts.store import AlertStore
from digitalme.monitoring.storage import TelemetryStore, compact, upgrade_async
from digitalme.monitoring.storage.engine import create_engine
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import RetentionSettings
from monitoring.alerts.helpers import EngineFactory, Feed, kinds, rule


async def _sql_store(url: str) -> SqlAlertStore:
    await upgrade_async(url)
    return SqlAlertStore(create_engine(url))


@pytest.fixture(params=BACKENDS)
async def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlAlertStore]:
    store = await _sql_store(backend_url(request, str(tmp_path / "telemetry.db")))
    try:
        yield store
    finally:
        await store.engine.dispose()


@pytest.fixture(params=["memory", *BACKENDS])
async def any_store(
    request: pytest.FixtureRequest, tmp_path: Path, memory_store: InMemoryAlertStore
) -> AsyncIterator[AlertStore]:
    if request.param == "memory":
        yield memory_store
        return
    store = await _sql_store(backend_url(request, str(tmp_path / "telemetry.db")))
    try:
        yield store
    finally:
        await store.engine.dispose()


def firing(clock: FakeClock, **fields: object) -> Alert:
    values: dict[str, object] = {
        "rule_id": "r1",
        "fingerprint": "f" * 32,
        "title": "t",
        "description": "d",
        "severity": Severity.HIGH,
        "category": AlertCategory.ERROR,
        "state": AlertState.FIRING,
        "created_at": clock.now(),
        "starts_at": clock.now(),
        "labels": {"alertname": "r1", "route": "GET /x"},
        "properties": {"metric": "m", "n": 2},
        "value": 12.5,
        "threshold": 10.0,
        "updated_at": clock.now(),
    }
    values.update(fields)
    return Alert(**values)  # type: ignore[arg-type]


def fired(alert: Alert, clock: FakeClock) -> tuple[AlertEvent, list[NewDelivery]]:
    event = AlertEvent.of(alert, AlertEventKind.FIRED, clock.now())
    deliveries = [
        NewDelivery(
            event_id=event.id,
            alert_id=alert.id,
            channel=channel,
            status=DeliveryStatus.PENDING,
            created_at=clock.now(),
            payload={"key": f"{event.id}:{channel}", "title": alert.title},
        )
        for channel in ("slack", "email")
    ]
    return event, deliveries


async def test_apply_round_trip_and_idempotent_retry(
    any_store: AlertStore, clock: FakeClock
) -> None:
    alert = firing(clock)
    event, deliveries = fired(alert, clock)
    changes = AlertChanges([alert], [], [event], deliveries)

    await any_store.apply(changes)
    await any_store.apply(changes)  # a retried commit adds nothing

    [loaded] = await any_store.load_active()
    assert loaded == alert
    detail = await any_store.get(alert.id)
    assert detail is not None
    assert detail.events == [event]
    assert [(d.channel, d.status, d.attempts) for d in detail.deliveries] == [
        ("slack", DeliveryStatus.PENDING, 0),
        ("email", DeliveryStatus.PENDING, 0),
    ]
    assert detail.deliveries[0].payload == {"key": f"{event.id}:slack", "title": "t"}
    assert await any_store.get("missing") is None


async def test_pending_alerts_can_be_dropped_and_resolved_ones_are_history(
    any_store: AlertStore, clock: FakeClock
) -> None:
    pending = firing(clock, state=AlertState.PENDING, starts_at=None, pending_since=clock.now())
    old = firing(clock, fingerprint="o" * 32, state=AlertState.RESOLVED, resolved_at=clock.now())
    muted = firing(
        clock,
        fingerprint="m" * 32,
        state=AlertState.RESOLVED,
        muted_until=clock.now() + timedelta(hours=1),
    )
    await any_store.apply(AlertChanges([pending, old, muted]))
    assert {a.id for a in await any_store.load_active()} == {pending.id, muted.id}
    restored = next(a for a in await any_store.load_active() if a.id == pending.id)
    assert restored.pending_since == clock.now()

    await any_store.apply(AlertChanges(removed=[pending.id]))
    assert [a.id for a in await any_store.load_active()] == [muted.id]


async def test_history_filters_newest_first(any_store: AlertStore, clock: FakeClock) -> None:
    alerts = []
    for n in range(5):
        alerts.append(
            firing(
                clock,
                rule_id="a" if n % 2 else "b",
                fingerprint=str(n) * 32,
                severity=Severity.CRITICAL if n == 4 else Severity.LOW,
                state=AlertState.RESOLVED if n < 2 else AlertState.FIRING,
            )
        )
        clock.advance(60)
    await any_store.apply(AlertChanges(alerts))

    newest = await any_store.history(AlertQuery(limit=2))
    assert [a.id for a in newest] == [alerts[4].id, alerts[3].id]
    assert [a.id for a in await any_store.history(AlertQuery(rule_id="a"))] == [
        alerts[3].id,
        alerts[1].id,
    ]
    resolved = await any_store.history(AlertQuery(state=AlertState.RESOLVED))
    assert {a.id for a in resolved} == {alerts[0].id, alerts[1].id}
    assert [a.id for a in await any_store.history(AlertQuery(severity=Severity.CRITICAL))] == [
        alerts[4].id
    ]
    since = alerts[2].created_at
    assert len(await any_store.history(AlertQuery(since=since))) == 3
    assert len(await any_store.history(AlertQuery(until=since))) == 2


async def test_the_outbox_claim_retry_and_dead_letter(
    any_store: AlertStore, clock: FakeClock
) -> None:
    alert = firing(clock)
    event, deliveries = fired(alert, clock)
    await any_store.apply(AlertChanges([alert], [], [event], deliveries))

    claimed = await any_store.claim_due_deliveries(clock.now(), 10, lease=30)
    assert [(d.channel, d.status) for d in claimed] == [
        ("slack", DeliveryStatus.SENDING),
        ("email", DeliveryStatus.SENDING),
    ]
    assert await any_store.claim_due_deliveries(clock.now(), 10) == []  # claimed already

    slack, email = claimed
    await any_store.record_attempt(
        DeliveryAttempt(delivery_id=slack.id, at=clock.now(), outcome="sent", latency_ms=12.0)
    )
    await any_store.mark_sent(slack.id, clock.now())
    await any_store.record_attempt(
        DeliveryAttempt(delivery_id=email.id, at=clock.now(), outcome="retry", detail="421")
    )
    await any_store.mark_retry(email.id, clock.now() + timedelta(seconds=10), "SMTP 421")

    clock.advance(10)
    [again] = await any_store.claim_due_deliveries(clock.now(), 10)
    assert again.id == email.id
    assert again.attempts == 1
    assert again.last_error == "SMTP 421"
    await any_store.mark_dead(email.id, "refused: 550", clock.now())

    detail = await any_store.get(alert.id)
    assert detail is not None
    assert [(d.status, d.attempts) for d in detail.deliveries] == [
        (DeliveryStatus.SENT, 1),
        (DeliveryStatus.DEAD, 1),
    ]
    assert detail.deliveries[0].sent_at == clock.now() - timedelta(seconds=10)
    assert detail.deliveries[1].last_error == "refused: 550"
    assert [(a.outcome, a.latency_ms) for a in detail.attempts] == [
        ("sent", 12.0),
        ("retry", None),
    ]


async def test_an_expired_claim_is_due_again(any_store: AlertStore, clock: FakeClock) -> None:
    """A dispatcher that died mid-send: its claim expires and the delivery is sent after all."""
    alert = firing(clock)
    event, deliveries = fired(alert, clock)
    await any_store.apply(AlertChanges([alert], [], [event], deliveries[:1]))
    [first] = await any_store.claim_due_deliveries(clock.now(), 1, lease=60)
    clock.advance(59)
    assert await any_store.claim_due_deliveries(clock.now(), 1) == []
    clock.advance(1)
    [second] = await any_store.claim_due_deliveries(clock.now(), 1)
    assert second.id == first.id


async def test_silences_and_rules_crud(any_store: AlertStore, clock: FakeClock) -> None:
    now = clock.now()
    silence = Silence(
        matchers={"alertname": "r1", "route": "=~GET .*"},
        starts_at=now,
        ends_at=now + timedelta(hours=1),
        created_by="ops",
        comment="maintenance",
        created_at=now,
    )
    later = Silence(
        matchers={"severity": "Low"},
        starts_at=now + timedelta(hours=2),
        ends_at=now + timedelta(hours=3),
        created_by="ops",
    )
    await any_store.save_silence(silence)
    await any_store.save_silence(later)
    assert await any_store.list_silences() == [silence, later]
    assert await any_store.list_silences(active_at=now) == [silence]
    changed = silence.model_copy(update={"comment": "longer"})
    await any_store.save_silence(changed)
    assert (await any_store.list_silences(active_at=now))[0].comment == "longer"
    assert await any_store.delete_silence(silence.id)
    assert not await any_store.delete_silence(silence.id)

    stored = StoredRule(
        id="api_rule", definition=rule(id="api_rule").definition(), enabled=True, updated_at=now
    )
    await any_store.save_rule(stored)
    await any_store.save_rule(
        StoredRule(id="api_rule", definition=stored.definition, enabled=False, updated_at=now)
    )
    [loaded] = await any_store.list_rules()
    assert loaded.enabled is False
    assert loaded.definition == stored.definition
    assert await any_store.delete_rule("api_rule")
    assert await any_store.list_rules() == []


async def test_a_restart_restores_firing_alerts_without_renotifying(
    sql_store: SqlAlertStore, make_engine: EngineFactory, feed: Feed, clock: FakeClock
) -> None:
    first = make_engine(rule(), store=sql_store)
    feed("m", 50)
    assert kinds(await first.evaluate()) == ["fired"]
    await first.stop()

    second = make_engine(rule(), store=sql_store)  # same store, fresh process state
    clock.advance(1)
    assert await second.evaluate() == []
    [alert] = second.active_alerts()
    assert alert.state is AlertState.FIRING
    assert len(await sql_store.deliveries()) == 2
    clock.advance(60)  # the window empties: it resolves, once
    assert kinds(await second.evaluate()) == ["resolved"]


async def test_a_restart_keeps_the_pending_timer(
    sql_store: SqlAlertStore, make_engine: EngineFactory, feed: Feed, clock: FakeClock
) -> None:
    first = make_engine(rule(min_duration=60, evaluation_window="5m"), store=sql_store)
    feed("m", 50)
    assert await first.evaluate() == []
    clock.advance(40)
    await first.evaluate()

    second = make_engine(rule(min_duration=60, evaluation_window="5m"), store=sql_store)
    clock.advance(19)
    assert await second.evaluate() == []  # 59 s since the breach began, not 19
    clock.advance(1)
    assert kinds(await second.evaluate()) == ["fired"]


async def test_a_restart_keeps_the_mute_of_a_manual_resolve(
    sql_store: SqlAlertStore, make_engine: EngineFactory, feed: Feed, clock: FakeClock
) -> None:
    first = make_engine(rule(), store=sql_store)
    feed("m", 50)
    [event] = await first.evaluate()
    await first.resolve(event.alert_id, "ops")

    second = make_engine(rule(), store=sql_store)
    clock.advance(1)
    assert await second.evaluate() == []  # still breaching, still muted


async def test_retention_keeps_alert_history(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'telemetry.db'}"
    telemetry = await TelemetryStore.open(url, clock=clock)
    try:
        store = SqlAlertStore(telemetry.engine)
        alert = firing(clock, state=AlertState.RESOLVED, resolved_at=clock.now())
        event, deliveries = fired(alert, clock)
        await store.apply(AlertChanges([alert], [], [event], deliveries))
        later = clock.time() + 5 * 365 * 86400
        await compact(telemetry, later, RetentionSettings())
        detail = await store.get(alert.id)
        assert detail is not None
        assert len(detail.events) == 1
        assert len(detail.deliveries) == 2
    finally:
        await telemetry.close()
