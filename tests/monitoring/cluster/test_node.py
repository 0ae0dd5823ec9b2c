"""Two instances on one store: one leads, the other forwards admin changes and mirrors
what the API shows; a handover goes on where the previous leader stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from digitalme.monitoring.alerts import (
    AlertCategory,
    AlertEngine,
    AlertEvent,
    AlertRule,
    AlertState,
    Severity,
    Silence,
    SqlAlertStore,
)
from digitalme.monitoring.alerts.catalog import RuleCatalog
from digitalme.monitoring.alerts.errors import (
    AlertNotFound,
    AlertStoreUnavailable,
    LeaderUnavailable,
)
from digitalme.monitoring.alerts.store import AlertQuery
from digitalme.monitoring.bus import EventBus
from digitalme.monitoring.cluster.commands import CommandKind, CommandQueue
from digitalme.monitoring.cluster.lease import Lease
from digitalme.monitoring.cluster.node import ALERTING_LEASE, AlertNode
from digitalme.monitoring.notifiers.dispatcher import Dispatcher
from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.testing import FakeClock, RecordingNotifier
from digitalme.settings import AlertingSettings, DeliverySettings
from polling import eventually


def to_recorder(event: AlertEvent, rule: AlertRule | None, fired: Sequence[str]) -> list[str]:
    return ["rec"]


def make_node(
    store: TelemetryStore, clock: FakeClock, instance: str, notifier: RecordingNotifier
) -> AlertNode:
    lease = Lease(store.engine, ALERTING_LEASE, instance, ttl=10.0, clock=clock)
    engine = AlertEngine(
        [],
        Aggregator(SeriesRegistry(), 10, 900),
        clock,
        SqlAlertStore(store.engine, fence=lease.fence),
        to_recorder,
        EventBus(),
        AlertingSettings(),
        strict=True,
    )
    dispatcher = Dispatcher(
        engine.store,
        {"rec": notifier},
        clock,
        DeliverySettings(poll_interval=0.1),
        engine.bus,
        may_send=lease.held,
        strict=True,
    )
    catalog = RuleCatalog([], engine, clock, max_window=900)
    queue = CommandQueue(store.engine, clock, timeout=5.0)
    return AlertNode(lease, engine, catalog, dispatcher, queue, strict=True)


@pytest.fixture
def notifiers() -> tuple[RecordingNotifier, RecordingNotifier]:
    return RecordingNotifier("a"), RecordingNotifier("b")


@pytest.fixture
async def nodes(
    store: TelemetryStore, clock: FakeClock, notifiers: tuple[RecordingNotifier, RecordingNotifier]
) -> AsyncIterator[tuple[AlertNode, AlertNode]]:
    a = make_node(store, clock, "a", notifiers[0])
    b = make_node(store, clock, "b", notifiers[1])
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await b.stop()
        await a.stop()


async def test_one_leads_and_the_other_forwards_raise_and_resolve(
    nodes: tuple[AlertNode, AlertNode],
    notifiers: tuple[RecordingNotifier, RecordingNotifier],
) -> None:
    a, b = nodes
    assert a.leading
    assert not b.leading
    assert a.engine.running
    assert not b.engine.running
    assert not b.dispatcher.running

    raised = await b.engine.raise_alert(
        "Disk full", "on db-1", Severity.HIGH, AlertCategory.AVAILABILITY, {"disk": "/var"}
    )
    assert raised.state is AlertState.FIRING
    assert [alert.id for alert in a.engine.active_alerts()] == [raised.id]  # the leader's own
    assert [alert.id for alert in b.engine.active_alerts()] == [raised.id]  # shown at once

    resolved = await b.engine.resolve(raised.id, "alice")
    assert resolved.state is AlertState.RESOLVED
    assert resolved.resolved_by == "alice"
    assert a.engine.active_alerts() == []
    assert b.engine.active_alerts() == []
    with pytest.raises(AlertNotFound):
        await b.engine.resolve("no-such-alert", "alice")

    leader, follower = notifiers
    await eventually(lambda: len(leader.sent) == 2, timeout=10, what="fired and resolved sent")
    assert [n.kind for n in leader.sent] == ["fired", "resolved"]
    assert follower.attempts == []  # only the leader's dispatcher sends


async def test_silences_and_rules_saved_on_a_follower_reach_the_leader(
    nodes: tuple[AlertNode, AlertNode], clock: FakeClock
) -> None:
    a, b = nodes
    silence = Silence.model_validate(
        {
            "id": "s1",
            "matchers": {"alertname": "manual"},
            "starts_at": clock.now(),
            "ends_at": clock.now().replace(year=2027),
            "created_by": "alice",
            "comment": "maintenance",
        }
    )
    await b.engine.add_silence(silence)
    assert [s.id for s in a.engine.silences] == ["s1"]
    rule = await b.catalog.create(
        {
            "id": "latency",
            "name": "Latency",
            "metric_name": "m",
            "operator": ">",
            "threshold": 1,
            "evaluation_window": 60,
        },
        "alice",
    )
    assert rule.id in {r.id for r in a.engine.rules}
    await b.engine.remove_silence("s1")
    assert a.engine.silences == []


async def test_the_next_leader_takes_over_the_alerts_and_the_outbox(
    nodes: tuple[AlertNode, AlertNode],
    notifiers: tuple[RecordingNotifier, RecordingNotifier],
    clock: FakeClock,
) -> None:
    a, b = nodes
    raised = await a.engine.raise_alert(
        "Queue stuck", "", Severity.CRITICAL, AlertCategory.AVAILABILITY
    )
    leader, follower = notifiers
    await eventually(lambda: len(leader.sent) == 1, timeout=10, what="fired notice sent")

    await a.stop()  # a clean shutdown releases the lease
    await b.leadership.step()
    assert b.leading
    assert [alert.id for alert in b.engine.active_alerts()] == [raised.id]
    await b.engine.resolve(raised.id, "bob")
    await eventually(lambda: len(follower.sent) == 1, timeout=10, what="resolved notice sent")
    assert [n.kind for n in follower.sent] == ["resolved"]
    assert [n.kind for n in leader.sent] == ["fired"]  # nothing sent twice


async def test_a_deposed_leader_cannot_write(
    nodes: tuple[AlertNode, AlertNode], clock: FakeClock
) -> None:
    a, _ = nodes
    clock.advance(8.5)  # a's renewals failed (say): past its share of the lease
    assert not a.lease.held()
    with pytest.raises(AlertStoreUnavailable):
        await a.engine.raise_alert("late", "", Severity.LOW, AlertCategory.AVAILABILITY)
    assert await a.engine.store.history(AlertQuery()) == []  # the fence refused it


async def test_a_change_nobody_applies_fails_clearly_and_is_withdrawn(
    store: TelemetryStore, clock: FakeClock
) -> None:
    queue = CommandQueue(store.engine, clock, timeout=0.3)
    with pytest.raises(LeaderUnavailable):
        await queue.submit(CommandKind.RESOLVE, {"alert_id": "x", "resolved_by": "alice"})
    assert await queue.take() == []
