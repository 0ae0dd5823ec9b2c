"""The engine's state machine: pending, firing, resolved; hysteresis, no data, repeats,
templates, silences, the outbox and isolation of failing rules."""

from __future__ import annotations

from datetime import timedelta

import pytest

from digitalme.monitoring.alerts import (
    ALERT_EVENT_TOPIC,
    AlertEventKind,
    AlertState,
    AlertStoreUnavailable,
    DeliveryStatus,
    InMemoryAlertStore,
    Silence,
)
from digitalme.monitoring.alerts.rules import AlertRule
from digitalme.monitoring.bus import EventBus
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.sinks import SeriesKey
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import AlertingSettings
from monitoring.alerts.helpers import EngineFactory, Feed, Routes, kinds, rule
from polling import eventually

DEADLINE = 10.0  # seconds; a bound for waiting, never a timing assertion


async def test_breach_fires_at_once_without_min_duration(
    make_engine: EngineFactory, feed: Feed, memory_store: InMemoryAlertStore
) -> None:
    engine = make_engine(rule())
    assert await engine.evaluate() == []
    feed("m", 50)

    events = await engine.evaluate()

    assert kinds(events) == ["fired"]
    [alert] = engine.active_alerts()
    assert alert.state is AlertState.FIRING
    assert alert.value == 50
    assert alert.threshold == 10
    assert alert.labels == {"alertname": "r1", "severity": "Medium", "category": "Performance"}
    assert memory_store.alerts[alert.id].state is AlertState.FIRING
    assert list(memory_store.events.values()) == events
    # and nothing more while it keeps breaching
    assert await engine.evaluate() == []


async def test_a_value_recorded_since_the_pipelines_last_fold_counts_on_the_next_tick(
    make_engine: EngineFactory, aggregator: Aggregator
) -> None:
    """The engine folds pending values itself: it does not wait for the pipeline's tick."""
    engine = make_engine(rule())
    aggregator.registry.series(SeriesKey("m")).pending.append(50.0)  # as the client records

    assert kinds(await engine.evaluate()) == ["fired"]
    assert not aggregator.registry.series(SeriesKey("m")).pending


async def test_min_duration_holds_the_alert_pending_then_fires(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock, memory_store: InMemoryAlertStore
) -> None:
    engine = make_engine(rule(min_duration="30s", evaluation_window="5m"))
    feed("m", 50)
    assert await engine.evaluate() == []
    [pending] = engine.active_alerts()
    assert pending.state is AlertState.PENDING
    assert memory_store.alerts[pending.id].pending_since == clock.now()  # survives restarts

    clock.advance(29)
    assert await engine.evaluate() == []
    clock.advance(1)
    events = await engine.evaluate()

    assert kinds(events) == ["fired"]
    assert events[0].alert_id == pending.id
    assert events[0].starts_at == clock.now()


async def test_a_pending_alert_that_stops_breaching_is_dropped_unnotified(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock, memory_store: InMemoryAlertStore
) -> None:
    engine = make_engine(rule(min_duration=60, evaluation_window=10))
    feed("m", 50)
    await engine.evaluate()
    assert len(memory_store.alerts) == 1
    clock.advance(10)  # the window moved past the value: no data, which is ok by default

    assert await engine.evaluate() == []
    assert engine.active_alerts() == []
    assert memory_store.alerts == {}
    assert memory_store.outbox == {}


async def test_resolves_when_the_condition_stops(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock, routes: Routes
) -> None:
    engine = make_engine(rule(evaluation_window=10, aggregation="max"))
    feed("m", 50)
    await engine.evaluate()
    clock.advance(10)
    feed("m", 5)

    events = await engine.evaluate()

    assert kinds(events) == ["resolved"]
    assert events[0].value == 5
    assert engine.active_alerts() == []
    # the resolved notice is routed knowing where the fired one went
    assert routes.calls[-1][2] == ("slack", "email")


async def test_keep_firing_for_bridges_short_gaps(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock
) -> None:
    engine = make_engine(rule(evaluation_window=10, keep_firing_for=30))
    feed("m", 50)
    assert kinds(await engine.evaluate()) == ["fired"]
    clock.advance(10)
    feed("m", 1)
    assert await engine.evaluate() == []  # 10 s after the last breach: still firing
    clock.advance(19)
    feed("m", 1)
    assert await engine.evaluate() == []
    clock.advance(1)
    assert kinds(await engine.evaluate()) == ["resolved"]


async def test_clear_threshold_gives_hysteresis(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock
) -> None:
    engine = make_engine(rule(evaluation_window=10, threshold=100, clear_threshold=80))
    feed("m", 120)
    assert kinds(await engine.evaluate()) == ["fired"]
    for value in (95, 81, 99):  # under the threshold, over the clear threshold
        clock.advance(10)
        feed("m", value)
        assert await engine.evaluate() == []
    clock.advance(10)
    feed("m", 80)
    assert kinds(await engine.evaluate()) == ["resolved"]
    clock.advance(10)
    feed("m", 95)  # below the threshold again: no new alert
    assert await engine.evaluate() == []


async def test_min_data_points_treats_thin_windows_as_no_data(
    make_engine: EngineFactory, feed: Feed
) -> None:
    engine = make_engine(rule(min_data_points=3))
    feed("m", 50, 50)
    assert await engine.evaluate() == []
    feed("m", 50)
    assert kinds(await engine.evaluate()) == ["fired"]


@pytest.mark.parametrize(
    ("mode", "after_silence"),
    [("ok", ["resolved"]), ("keep_state", []), ("alerting", [])],
)
async def test_no_data_modes_for_a_firing_alert(
    mode: str, after_silence: list[str], make_engine: EngineFactory, feed: Feed, clock: FakeClock
) -> None:
    engine = make_engine(rule(evaluation_window=10, no_data=mode))
    feed("m", 50)
    assert kinds(await engine.evaluate()) == ["fired"]
    clock.advance(20)  # nothing recorded since

    assert kinds(await engine.evaluate()) == after_silence
    expected = [] if mode == "ok" else [AlertState.FIRING]
    assert [a.state for a in engine.active_alerts()] == expected


async def test_no_data_alerting_fires_without_any_series(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = make_engine(rule(no_data="alerting", group_by=["route"]))
    events = await engine.evaluate()
    assert kinds(events) == ["fired"]
    assert events[0].value is None
    assert events[0].labels["route"] == ""
    assert "no data" in events[0].description
    clock.advance(1)
    assert await engine.evaluate() == []


async def test_repeat_interval_renotifies_a_firing_alert(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock
) -> None:
    engine = make_engine(rule(evaluation_window="5m", repeat_interval="1m"))
    feed("m", 50)
    assert kinds(await engine.evaluate()) == ["fired"]
    clock.advance(59)
    assert await engine.evaluate() == []
    clock.advance(1)
    repeated = await engine.evaluate()
    assert kinds(repeated) == ["repeated"]
    clock.advance(30)
    assert await engine.evaluate() == []
    clock.advance(30)
    assert kinds(await engine.evaluate()) == ["repeated"]


async def test_group_by_gives_one_instance_per_group(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock
) -> None:
    engine = make_engine(
        rule(
            metric_name="http",
            group_by=["route"],
            evaluation_window=10,
            title_template="Slow {labels[route]}",
            description_template="{labels[route]}: {value:.0f} ms > {threshold:.0f} ms",
        )
    )
    feed("http", 50, labels={"route": "a", "status_code": "200"})
    feed("http", 70, labels={"route": "b", "status_code": "200"})
    feed("http", 1, labels={"route": "c", "status_code": "200"})

    events = sorted(await engine.evaluate(), key=lambda e: e.title)

    assert [e.title for e in events] == ["Slow a", "Slow b"]
    assert [e.description for e in events] == ["a: 50 ms > 10 ms", "b: 70 ms > 10 ms"]
    assert len({e.fingerprint for e in events}) == 2
    assert events[0].labels["route"] == "a"

    clock.advance(10)
    feed("http", 1, labels={"route": "a", "status_code": "200"})
    feed("http", 70, labels={"route": "b", "status_code": "200"})
    resolved = await engine.evaluate()
    assert [(e.kind, e.labels["route"]) for e in resolved] == [(AlertEventKind.RESOLVED, "a")]


async def test_each_event_gets_one_outbox_row_per_channel_in_its_transaction(
    make_engine: EngineFactory, feed: Feed, memory_store: InMemoryAlertStore
) -> None:
    engine = make_engine(rule(), rule(id="r2", notification_channels=["webhook"]))
    feed("m", 50)

    events = await engine.evaluate()

    assert memory_store.transactions == 1  # alerts, events and deliveries together
    rows = sorted((d.alert_id, d.channel) for d in memory_store.outbox.values())
    by_rule = {e.rule_id: e.alert_id for e in events}
    assert rows == sorted(
        [(by_rule["r1"], "slack"), (by_rule["r1"], "email"), (by_rule["r2"], "webhook")]
    )
    for delivery in memory_store.outbox.values():
        assert delivery.status is DeliveryStatus.PENDING
        assert delivery.idempotency_key == f"{delivery.event_id}:{delivery.channel}"
        assert delivery.payload["key"] == delivery.idempotency_key
        assert delivery.payload["kind"] == "fired"
        assert delivery.payload["severity"] == "Medium"
    [fired] = [a for a in engine.active_alerts() if a.rule_id == "r1"]
    assert fired.notified_channels == ["slack", "email"]
    assert fired.last_notified_at is not None


async def test_silences_suppress_deliveries_but_not_detection(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock, memory_store: InMemoryAlertStore
) -> None:
    engine = make_engine(rule(evaluation_window=10, labels={"team": "web"}))
    silence = await engine.add_silence(
        Silence(
            matchers={"team": "web", "alertname": "=~r.*"},
            starts_at=clock.now(),
            ends_at=clock.now() + timedelta(hours=1),
            created_by="ops@example.com",
            comment="deploying",
        )
    )
    assert memory_store.silences[silence.id].created_at == clock.now()
    feed("m", 50)

    assert kinds(await engine.evaluate()) == ["fired"]  # detected and recorded
    [alert] = engine.active_alerts()
    assert alert.silenced
    statuses = {d.status for d in memory_store.outbox.values()}
    assert statuses == {DeliveryStatus.SUPPRESSED}
    assert await memory_store.claim_due_deliveries(clock.now(), 10) == []

    clock.advance(10)
    assert kinds(await engine.evaluate()) == ["resolved"]  # never told: the notice is silent too
    assert {d.status for d in memory_store.outbox.values()} == {DeliveryStatus.SUPPRESSED}

    await engine.remove_silence(silence.id)
    feed("m", 50)
    assert kinds(await engine.evaluate()) == ["fired"]
    assert DeliveryStatus.PENDING in {d.status for d in memory_store.outbox.values()}
    assert not engine.active_alerts()[0].silenced


async def test_a_failing_rule_does_not_stop_the_others(
    make_engine: EngineFactory, feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = rule(id="broken")
    monkeypatch.setattr(
        AlertRule, "breaches", lambda self, value: 1 / 0 if self.id == "broken" else value > 10
    )
    engine = make_engine(broken, rule(id="fine"), strict=False)
    feed("m", 50)

    events = await engine.evaluate()
    await engine.evaluate()

    assert [e.rule_id for e in events] == ["fine"]
    assert engine.rule_errors == {"broken": 2}


async def test_disabled_and_removed_rules_resolve_their_alerts(
    make_engine: EngineFactory, feed: Feed
) -> None:
    engine = make_engine(rule(id="a"), rule(id="b"))
    feed("m", 50)
    assert len(await engine.evaluate()) == 2

    engine.set_rules([rule(id="a", enabled=False)])
    events = await engine.evaluate()

    assert sorted((e.rule_id, e.kind, e.resolved_by) for e in events) == [
        ("a", AlertEventKind.RESOLVED, "engine: rule disabled"),
        ("b", AlertEventKind.RESOLVED, "engine: rule removed"),
    ]


async def test_active_alerts_are_bounded(make_engine: EngineFactory, feed: Feed) -> None:
    engine = make_engine(rule(group_by=["n"]), settings=AlertingSettings(max_active_alerts=10))
    for n in range(15):
        feed("m", 50, labels={"n": str(n)})
    assert len(await engine.evaluate()) == 10
    assert engine.dropped_instances == 5


async def test_events_are_published_on_the_bus_after_the_commit(
    make_engine: EngineFactory, feed: Feed
) -> None:
    bus = EventBus()
    subscription = bus.subscribe(ALERT_EVENT_TOPIC)
    engine = make_engine(rule(), bus=bus)
    feed("m", 50)
    [event] = await engine.evaluate()
    message = subscription.queue.get_nowait()
    assert message.payload is event


async def test_changes_wait_while_the_store_is_down_and_are_written_in_order(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock, memory_store: InMemoryAlertStore
) -> None:
    engine = make_engine(rule(evaluation_window=10))
    await engine.restore()
    memory_store.failing = True
    feed("m", 50)
    with pytest.raises(AlertStoreUnavailable):
        await engine.evaluate()
    clock.advance(10)
    with pytest.raises(AlertStoreUnavailable):
        await engine.evaluate()  # resolved meanwhile, still unwritten
    assert memory_store.events == {}

    memory_store.failing = False
    await engine.evaluate()  # within the pause after a failure: not asked yet
    assert memory_store.events == {}
    clock.advance(1)
    await engine.evaluate()

    stored = sorted(memory_store.events.values(), key=lambda e: e.at)
    assert [str(e.kind) for e in stored] == ["fired", "resolved"]
    assert [a.state for a in memory_store.alerts.values()] == [AlertState.RESOLVED]
    assert engine.store_errors == 2


async def test_value_changes_are_written_at_most_every_few_seconds(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock, memory_store: InMemoryAlertStore
) -> None:
    engine = make_engine(rule(aggregation="max"))
    feed("m", 50)
    await engine.evaluate()
    [alert] = engine.active_alerts()
    writes = memory_store.transactions
    feed("m", 70)
    await engine.evaluate()
    assert memory_store.transactions == writes  # nothing to tell: not written yet
    clock.advance(5)
    await engine.evaluate()
    assert memory_store.alerts[alert.id].value == 70


async def test_the_loop_survives_a_store_outage_and_catches_up(
    make_engine: EngineFactory, feed: Feed, memory_store: InMemoryAlertStore
) -> None:
    memory_store.failing = True  # even the restore fails at first
    engine = make_engine(rule(), settings=AlertingSettings(tick=0.01), strict=False)
    feed("m", 50)
    await engine.start()
    try:
        await eventually(lambda: engine.loop_errors >= 3, timeout=DEADLINE, what="failed ticks")
        assert engine.running
        memory_store.failing = False
        await eventually(lambda: memory_store.events != {}, timeout=DEADLINE, what="the event")
    finally:
        await engine.stop()
    assert kinds(list(memory_store.events.values())) == ["fired"]


async def test_ended_silences_stop_matching(
    make_engine: EngineFactory, feed: Feed, clock: FakeClock, memory_store: InMemoryAlertStore
) -> None:
    engine = make_engine(rule(evaluation_window=10))
    await engine.add_silence(
        Silence(
            matchers={"alertname": "r1"},
            starts_at=clock.now(),
            ends_at=clock.now() + timedelta(seconds=30),
            created_by="ops",
        )
    )
    clock.advance(30)
    feed("m", 50)
    await engine.evaluate()
    assert {d.status for d in memory_store.outbox.values()} == {DeliveryStatus.PENDING}
    assert engine.silences == []
    assert len(await memory_store.list_silences()) == 1  # kept as history
