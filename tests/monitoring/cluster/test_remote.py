"""The leader's engine over its own live aggregates plus the other instances' stored data."""

from __future__ import annotations

from typing import Any

from digitalme.monitoring.alerts import AlertEngine, AlertRule, AlertState, SqlAlertStore
from digitalme.monitoring.bus import BusMessage, EventBus
from digitalme.monitoring.cluster.commands import (
    RUNNER_INTERVAL,
    CommandKind,
    CommandQueue,
    CommandRunner,
)
from digitalme.monitoring.cluster.remote import (
    ALONE_INTERVAL,
    RemoteBuckets,
    RemoteSecurityEvents,
)
from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.client import CRITICAL_SECURITY_TOPIC
from digitalme.monitoring.telemetry.items import SecurityEventItem, Severity
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import AlertingSettings
from monitoring.alerts.helpers import Feed, Routes, rule


def leader_engine(
    store: TelemetryStore, clock: FakeClock, aggregator: Aggregator, *rules: AlertRule
) -> AlertEngine:
    return AlertEngine(
        rules,
        aggregator,
        clock,
        SqlAlertStore(store.engine),
        Routes(),
        EventBus(),
        AlertingSettings(),
        remote=RemoteBuckets(
            store.engine, "a", resolution=10, window=900.0, clock=clock, recent=60.0
        ),
        remote_security=RemoteSecurityEvents(store.engine, "a", clock=clock),
        strict=True,
    )


def bucket(start: float, *values: float) -> Bucket:
    found = Bucket(start - start % 10, 10)
    found.add_many(list(values))
    return found


async def write(store: TelemetryStore, instance: str, name: str, found: Bucket) -> None:
    await store.write(TelemetryBatch(buckets=[(SeriesKey(name), found)], instance=instance))


async def test_counts_add_and_sketches_merge_across_instances(
    store: TelemetryStore, clock: FakeClock
) -> None:
    aggregator = Aggregator(SeriesRegistry(), 10, 900)
    count_rule = rule(id="count", aggregation="count", threshold=5)
    p95_rule = rule(id="p95", aggregation="p95", threshold=500)
    engine = leader_engine(store, clock, aggregator, count_rule, p95_rule)
    now = clock.time()
    Feed(aggregator, clock)("m", 1, 2, 3)  # local: 3 values, all small
    await write(store, "a", "m", bucket(now, 1, 2, 3))  # its own flush: not counted twice
    await write(store, "b", "m", bucket(now, 900, 900))
    await write(store, "c", "m", bucket(now - 20, 950))

    events = await engine.evaluate()

    fired = {event.rule_id: event for event in events}
    assert set(fired) == {"count", "p95"}
    assert fired["count"].value == 6  # 3 local + 2 from b + 1 from c
    assert fired["p95"].value is not None
    assert 890 <= fired["p95"].value <= 960
    remote = engine.remote
    assert remote is not None
    assert remote.instances == {"b", "c"}


async def test_a_remote_bucket_that_grows_is_read_again_and_old_ones_leave(
    store: TelemetryStore, clock: FakeClock
) -> None:
    aggregator = Aggregator(SeriesRegistry(), 10, 900)
    engine = leader_engine(store, clock, aggregator, rule(aggregation="count", threshold=3))
    now = clock.time()
    await write(store, "b", "m", bucket(now, 1, 1))
    assert await engine.evaluate() == []
    await write(store, "b", "m", bucket(now, 1, 1, 1, 1))  # the same bucket, filling
    clock.advance(0.3)  # past the poll interval
    [fired] = await engine.evaluate()
    assert fired.value == 4
    remote = engine.remote
    assert remote is not None
    decoded = remote.decoded
    clock.advance(0.3)
    await engine.evaluate()
    assert remote.decoded == decoded  # unchanged rows are not decoded again

    clock.advance(1000)  # the bucket leaves the window
    await engine.evaluate()
    assert remote.instances == set()


async def test_security_events_of_other_instances_group_with_local_ones(
    store: TelemetryStore, clock: FakeClock
) -> None:
    aggregator = Aggregator(SeriesRegistry(), 10, 900)
    engine = leader_engine(store, clock, aggregator)
    assert engine.remote_security is not None
    engine.remote_security.begin(catch_up=30.0)  # what start() does at an election
    now = clock.time()
    attack = [
        SecurityEventItem(
            time=now, event_type="SqlInjection", severity=Severity.CRITICAL,
            details="' OR 1=1", client_ip="203.0.113.9",
        )
        for _ in range(2)
    ]  # fmt: skip
    await store.write(TelemetryBatch(items=attack, instance="b"))
    await store.write(TelemetryBatch(items=attack[:1], instance="c"))
    # an event recorded by this instance itself comes on its bus, not from the store
    await store.write(TelemetryBatch(items=attack[:1], instance="a"))
    await engine.evaluate()
    await engine.handle_security([BusMessage(CRITICAL_SECURITY_TOPIC, attack[0])])
    [alert] = engine.active_alerts()
    assert alert.state is AlertState.FIRING
    assert alert.count == 4  # two from b, one from c, one local
    clock.advance(0.3)
    await engine.evaluate()  # read again: nothing counted twice
    assert engine.active_alerts()[0].count == 4


async def test_a_lone_leader_reads_the_store_once_a_second_until_another_instance_writes(
    store: TelemetryStore, clock: FakeClock
) -> None:
    aggregator = Aggregator(SeriesRegistry(), 10, 900)
    engine = leader_engine(store, clock, aggregator, rule(aggregation="count", threshold=3))
    remote = engine.remote
    assert remote is not None

    async def polls_after(seconds: float) -> int:
        clock.advance(seconds)
        await engine.evaluate()
        return remote.polls

    assert await polls_after(0) == 1
    assert engine.alone
    assert await polls_after(0.3) == 1  # alone: not every remote_poll_interval (0.25 s)
    assert await polls_after(0.8) == 2  # but once a second
    await write(store, "b", "m", bucket(clock.time(), 1))
    assert await polls_after(1.0) == 3
    assert not engine.alone
    assert await polls_after(0.3) == 4  # another instance writes: every 0.25 s again
    assert await polls_after(0.3) == 5


def test_the_leader_looks_at_the_command_queue_slowly_only_while_alone(
    store: TelemetryStore, clock: FakeClock
) -> None:
    alone = [True]

    async def apply(kind: CommandKind, body: dict[str, Any]) -> dict[str, Any]:
        return {}

    runner = CommandRunner(
        CommandQueue(store.engine, clock, timeout=5.0), apply, alone=lambda: alone[0]
    )
    assert runner.interval() == ALONE_INTERVAL == 1.0
    alone[0] = False
    assert runner.interval() == RUNNER_INTERVAL == 0.1
