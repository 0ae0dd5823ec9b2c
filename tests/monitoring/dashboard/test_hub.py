"""The live hub's logic: groups, bounded queues, fan-out, bus translation, snapshots."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from digitalme.monitoring.alerts.engine import ALERT_EVENT_TOPIC
from digitalme.monitoring.alerts.model import (
    AlertCategory,
    AlertEvent,
    AlertEventKind,
)
from digitalme.monitoring.bus import BusMessage, EventBus
from digitalme.monitoring.dashboard.hub import (
    GOING_AWAY,
    POLICY_VIOLATION,
    Hub,
    HubClient,
    HubFull,
)
from digitalme.monitoring.dashboard.hub_messages import Group, Message
from digitalme.monitoring.dashboard.hub_routes import (
    MAX_MESSAGE_BYTES,
    Problem,
    handle_message,
    parse,
    token_request,
)
from digitalme.monitoring.dashboard.hub_snapshot import LiveSnapshot
from digitalme.monitoring.health.model import HealthStatus
from digitalme.monitoring.health.prober import HEALTH_CHANGED_TOPIC, HealthChange
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.client import REQUEST_DURATION, SECURITY_TOPIC
from digitalme.monitoring.telemetry.items import SecurityEventItem, Severity
from digitalme.monitoring.telemetry.redaction import Redactor
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.telemetry.sinks import SeriesKey
from digitalme.monitoring.testing import FakeClock

AT = datetime(2026, 1, 1, tzinfo=UTC)


def make_hub(
    clock: FakeClock,
    *,
    bus: EventBus | None = None,
    aggregator: Aggregator | None = None,
    max_connections: int = 10,
    queue_size: int = 5,
    status: HealthStatus | None = None,
) -> Hub:
    aggregator = aggregator or Aggregator(SeriesRegistry())
    return Hub(
        bus or EventBus(),
        clock=clock,
        snapshot=LiveSnapshot(aggregator, interval=2.0, clock=clock),
        redactor=Redactor(),
        health_status=lambda: status,
        max_connections=max_connections,
        queue_size=queue_size,
        stall_timeout=30.0,
        heartbeat_interval=3600.0,
        strict=True,
    )


async def take_all(client: HubClient) -> list[Message]:
    out: list[Message] = []
    while client.pending or client._unreported:
        message = await client.next()
        assert message is not None
        out.append(message)
    return out


def snapshot_of(seq: int) -> Message:
    return {"type": "MetricsSnapshot", "sequence": seq}


def alert_event(kind: AlertEventKind) -> AlertEvent:
    return AlertEvent(
        alert_id="a1",
        rule_id="manual",
        fingerprint="f",
        kind=kind,
        at=AT,
        severity=Severity.HIGH,
        category=AlertCategory.PERFORMANCE,
        title="Slow",
        description="slow requests",
        starts_at=AT,
    )


async def test_a_client_gets_nothing_before_it_is_admitted_then_a_welcome(clock: FakeClock) -> None:
    hub = make_hub(clock, status=HealthStatus.DEGRADED)
    client = hub.connect()
    hub.broadcast(snapshot_of(1))
    assert client.pending == 0
    hub.admit(client)
    hub.broadcast(snapshot_of(2))
    got = await take_all(client)
    assert [m["type"] for m in got] == ["Welcome", "HealthUpdate", "MetricsSnapshot"]
    assert got[0]["groups"] == ["alerts", "health", "metrics", "security"]
    assert got[1]["status"] == "Degraded"
    assert got[1]["change"] is False


async def test_joined_nothing_gets_every_group_a_join_narrows_and_leave_removes(
    clock: FakeClock,
) -> None:
    hub = make_hub(clock, queue_size=50)
    everything, narrowed, all_but = hub.connect(), hub.connect(), hub.connect()
    for client in (everything, narrowed, all_but):
        hub.admit(client)
        await take_all(client)
    narrowed.join(Group.ALERTS)
    narrowed.join(Group.HEALTH)
    all_but.leave(Group.METRICS)
    hub.handle(BusMessage(ALERT_EVENT_TOPIC, alert_event(AlertEventKind.FIRED)))
    hub.broadcast(snapshot_of(1))
    hub.beat()  # a Heartbeat belongs to no group
    assert [m["type"] for m in await take_all(everything)] == [
        "AlertFired",
        "MetricsSnapshot",
        "Heartbeat",
    ]
    assert [m["type"] for m in await take_all(narrowed)] == ["AlertFired", "Heartbeat"]
    assert [m["type"] for m in await take_all(all_but)] == ["AlertFired", "Heartbeat"]
    narrowed.leave(Group.ALERTS)
    hub.handle(BusMessage(ALERT_EVENT_TOPIC, alert_event(AlertEventKind.RESOLVED)))
    assert await take_all(narrowed) == []


async def test_beyond_max_connections_connect_is_refused_until_one_leaves(clock: FakeClock) -> None:
    hub = make_hub(clock, max_connections=2)
    first = hub.connect()
    hub.connect()
    with pytest.raises(HubFull) as refused:
        hub.connect()
    assert refused.value.max_connections == 2
    hub.disconnect(first)
    hub.connect()


async def test_a_full_queue_loses_the_oldest_and_says_how_many(clock: FakeClock) -> None:
    hub = make_hub(clock, queue_size=3)
    client = hub.connect()
    hub.admit(client)
    await take_all(client)
    for seq in range(1, 8):
        hub.broadcast(snapshot_of(seq))
    assert client.dropped == 4
    got = await take_all(client)
    assert got[0] == {"type": "Dropped", "count": 4}
    assert [m["sequence"] for m in got[1:]] == [5, 6, 7]


async def test_a_client_stuck_with_a_full_queue_is_closed_after_the_stall_timeout(
    clock: FakeClock,
) -> None:
    hub = make_hub(clock, queue_size=2)
    stuck, reader = hub.connect(), hub.connect()
    for client in (stuck, reader):
        hub.admit(client)
    await take_all(reader)
    for seq in range(10):
        hub.broadcast(snapshot_of(seq))
        assert (await reader.next()) is not None  # the reader keeps up
    clock.advance(29)
    hub.check_stalled()
    assert not stuck.closed.is_set()
    clock.advance(2)
    hub.broadcast(snapshot_of(99))
    assert stuck.closed.is_set()
    assert stuck.close_code == POLICY_VIOLATION
    assert await stuck.next() is None
    assert not reader.closed.is_set()
    assert hub.kicked == 1


async def test_reading_again_resets_the_stall(clock: FakeClock) -> None:
    hub = make_hub(clock, queue_size=2)
    client = hub.connect()
    hub.admit(client)
    for seq in range(5):
        hub.broadcast(snapshot_of(seq))
    clock.advance(20)
    await client.next()
    clock.advance(20)
    hub.check_stalled()
    assert not client.closed.is_set()


async def test_bus_messages_become_hub_messages(clock: FakeClock) -> None:
    hub = make_hub(clock, queue_size=50)
    client = hub.connect()
    hub.admit(client)
    await take_all(client)
    change = HealthChange("database", HealthStatus.HEALTHY, HealthStatus.UNHEALTHY, AT, "down")
    hub.handle(BusMessage(HEALTH_CHANGED_TOPIC, change))
    for kind in AlertEventKind:
        hub.handle(BusMessage(ALERT_EVENT_TOPIC, alert_event(kind)))
    secret = "token=sk-ant-abcdefghijklmnopqrstuvwxyz0123456789 password=hunter2"
    for severity in (Severity.LOW, Severity.HIGH):
        item = SecurityEventItem(
            time=AT.timestamp(),
            event_type="SqlInjection",
            severity=severity,
            details=f"attempt with {secret}",
            client_ip="10.0.0.9",
        )
        hub.handle(BusMessage(SECURITY_TOPIC, item))
    hub.handle(BusMessage(HEALTH_CHANGED_TOPIC, "not a change"))  # ignored, not an error
    got = await take_all(client)
    assert [m["type"] for m in got] == [
        "HealthUpdate",
        "AlertFired",
        "AlertResolved",
        "SecurityEvent",
    ]
    health, fired, resolved, security = got
    assert health == {
        "type": "HealthUpdate",
        "subject": "database",
        "status": "Unhealthy",
        "previous": "Healthy",
        "at": AT.isoformat(),
        "description": "down",
        "change": True,
    }
    assert fired["alert"] == alert_event(AlertEventKind.FIRED).to_dict() | {
        "id": fired["alert"]["id"]
    }
    assert resolved["alert"]["kind"] == "resolved"
    assert security["severity"] == "High"
    assert security["client_ip"] == "10.0.0.9"
    assert "hunter2" not in security["details"]
    assert "sk-ant" not in security["details"]
    assert security["details"].startswith("attempt with")


async def test_start_subscribes_once_and_stop_closes_every_client_with_1001(
    clock: FakeClock,
) -> None:
    bus = EventBus()
    hub = make_hub(clock, bus=bus)
    hub.start()
    clients = [hub.connect() for _ in range(3)]
    for client in clients:
        hub.admit(client)
    assert len(bus._subscriptions) == 1

    async def connection(client: HubClient) -> None:
        while await client.next() is not None:
            pass
        hub.disconnect(client)

    tasks = [asyncio.create_task(connection(c)) for c in clients]
    change = HealthChange("overall", None, HealthStatus.HEALTHY, AT, "first round")
    bus.publish(HEALTH_CHANGED_TOPIC, change)
    await hub.stop()
    await asyncio.gather(*tasks)
    assert all(c.close_code == GOING_AWAY for c in clients)
    assert hub.clients == {}
    assert bus._subscriptions == []
    assert not hub.running


def test_live_snapshot_counts_requests_errors_and_alerts(clock: FakeClock) -> None:
    aggregator = Aggregator(SeriesRegistry(), bucket_seconds=10)
    now = clock.time()

    def request(status: int, ms: float) -> None:
        key = SeriesKey(REQUEST_DURATION, (("route", "/x"), ("status_code", str(status))))
        aggregator.observe(key, ms, now)

    request(200, 5.0)  # before the hub: not in its first interval
    snapshot = LiveSnapshot(aggregator, interval=2.0, clock=clock, active_alerts=lambda: 3)
    for _ in range(3):
        request(200, 10.0)
    request(500, 100.0)
    first = snapshot.take(connections=2)
    assert first["type"] == "MetricsSnapshot"
    assert first["sequence"] == 1
    assert first["requests_per_second"] == 2.0  # 4 requests over 2 s
    assert first["requests_1m"] == 4
    assert first["errors_1m"] == 1
    assert first["error_rate_1m"] == 0.25
    assert first["requests_total"] == 5
    assert first["active_alerts"] == 3
    assert first["connections"] == 2
    assert first["p95_ms_1m"] == pytest.approx(10.0, rel=0.02)  # the sketch's lower p95 of 5
    second = snapshot.take()
    assert second["sequence"] == 2
    assert second["requests_per_second"] == 0.0
    assert second["requests_1m"] == 4
    assert second["requests_per_second_1m"] == 1.0


def test_live_snapshot_forgets_what_is_older_than_a_minute(clock: FakeClock) -> None:
    aggregator = Aggregator(SeriesRegistry())
    snapshot = LiveSnapshot(aggregator, interval=30.0, clock=clock)
    aggregator.observe(SeriesKey(REQUEST_DURATION, (("status_code", "200"),)), 1.0, clock.time())
    assert snapshot.take()["requests_1m"] == 1
    assert snapshot.take()["requests_1m"] == 1
    assert snapshot.take()["requests_1m"] == 0


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ({"type": "websocket.receive", "bytes": b"\x00"}, 1003),
        ({"type": "websocket.receive", "text": "not json"}, 1003),
        ({"type": "websocket.receive", "text": "[1, 2]"}, 1008),
        ({"type": "websocket.receive", "text": '{"type": 3}'}, 1008),
        (
            {
                "type": "websocket.receive",
                "text": '{"type": "ping", "pad": "%s"}' % ("x" * MAX_MESSAGE_BYTES),
            },
            1008,
        ),
    ],
)
def test_garbage_is_a_problem_with_its_close_code(raw: dict[str, object], code: int) -> None:
    problem = parse(raw)
    assert isinstance(problem, Problem)
    assert problem.code == code


async def test_client_messages_join_leave_ping_and_refuse_the_unknown(clock: FakeClock) -> None:
    hub = make_hub(clock, queue_size=50)
    client = hub.connect()
    assert handle_message(client, {"type": "join", "group": "alerts"}) is None
    assert handle_message(client, {"type": "leave", "group": "alerts"}) is None
    assert handle_message(client, {"type": "ping"}) is None
    assert [m["type"] for m in await take_all(client)] == ["Joined", "Left", "Pong"]
    assert client.groups == set()
    unknown_group = handle_message(client, {"type": "join", "group": "everything"})
    unknown_type = handle_message(client, {"type": "subscribe"})
    assert isinstance(unknown_group, Problem)
    assert unknown_group.code == 1008
    assert isinstance(unknown_type, Problem)
    assert unknown_type.code == 1008


def test_token_request_carries_the_token_as_a_bearer_header() -> None:
    scope = {
        "type": "websocket",
        "path": "/hubs/metrics",
        "query_string": b"access_token=abc",
        "headers": [(b"host", b"x"), (b"authorization", b"Basic old")],
    }
    request = token_request(scope, "abc")
    assert request.headers["authorization"] == "Bearer abc"
    assert request.headers["host"] == "x"
    assert token_request(scope, None).headers["authorization"] == "Basic old"
    assert "authorization" not in token_request(scope, "caf\u20ac").headers
