"""The live hub's backplane: hubs of several instances sharing their messages.

Unit tests of the hub's fan-out use the in-memory network; the Redis backplane
is tested against real Redis servers, killed and restarted.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
import structlog.testing

from digitalme.monitoring.alerts.engine import ALERT_EVENT_TOPIC
from digitalme.monitoring.alerts.model import AlertCategory, AlertEvent, AlertEventKind
from digitalme.monitoring.bus import BusMessage, EventBus
from digitalme.monitoring.dashboard.backplane import (
    CHECK_NAME,
    Backplane,
    BackplaneStatus,
    RedisBackplane,
    backplane_check,
    decode_envelope,
    encode_envelope,
    redis_backplane,
)
from digitalme.monitoring.dashboard.hub import Hub, HubClient
from digitalme.monitoring.dashboard.hub_messages import Group, Message
from digitalme.monitoring.dashboard.hub_snapshot import LiveSnapshot
from digitalme.monitoring.health.model import HealthStatus
from digitalme.monitoring.health.prober import HEALTH_CHANGED_TOPIC, HealthChange
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.client import SECURITY_TOPIC
from digitalme.monitoring.telemetry.items import SecurityEventItem, Severity
from digitalme.monitoring.telemetry.redaction import Redactor
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.testing import FakeClock, InMemoryBackplaneNetwork
from digitalme.settings import Settings
from polling import eventually
from servers import RedisServer, find_free_port

AT = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE = 10.0  # seconds: a bound for waiting, never a timing assertion
SHARED = ("HealthUpdate", "AlertFired", "SecurityEvent")


def make_hub(
    clock: FakeClock,
    *,
    backplane: Backplane | None,
    instance: str | None,
    bus: EventBus | None = None,
) -> Hub:
    return Hub(
        bus or EventBus(),
        clock=clock,
        snapshot=LiveSnapshot(Aggregator(SeriesRegistry()), interval=3600.0, clock=clock),
        redactor=Redactor(),
        queue_size=200,
        heartbeat_interval=3600.0,
        strict=True,
        backplane=backplane,
        instance=instance,
    )


async def stop(hub: Hub) -> None:
    """Stop ``hub``; the test's clients have no connection to end, so forget them first."""
    for client in tuple(hub.clients.values()):
        hub.disconnect(client)
    await hub.stop()


def admitted(hub: Hub, *groups: Group) -> HubClient:
    client = hub.connect(groups)
    hub.admit(client)
    return client


class Inbox:
    """What a hub client was sent, read as it comes (the way its sender would)."""

    def __init__(self, client: HubClient) -> None:
        self.client = client
        self.messages: list[Message] = []

    async def pull(self) -> list[Message]:
        while self.client.pending:
            message = await self.client.next()
            assert message is not None
            self.messages.append(message)
        return self.messages

    def of(self, *types: str) -> list[Message]:
        return [m for m in self.messages if m["type"] in types]

    def has(self, kind: str, **fields: object) -> Callable[[], object]:
        async def found() -> bool:
            await self.pull()
            return any(
                m["type"] == kind and all(m.get(k) == v for k, v in fields.items())
                for m in self.messages
            )

        return found


def health_change(subject: str = "database") -> HealthChange:
    return HealthChange(subject, HealthStatus.HEALTHY, HealthStatus.UNHEALTHY, AT, "down")


def alert_event() -> AlertEvent:
    return AlertEvent(
        alert_id="a1",
        rule_id="manual",
        fingerprint="f",
        kind=AlertEventKind.FIRED,
        at=AT,
        severity=Severity.HIGH,
        category=AlertCategory.PERFORMANCE,
        title="Slow",
        description="slow requests",
        starts_at=AT,
    )


def security_item() -> SecurityEventItem:
    return SecurityEventItem(
        time=AT.timestamp(),
        event_type="SqlInjection",
        severity=Severity.CRITICAL,
        details="attempt with password=hunter2",
        client_ip="10.0.0.9",
    )


def publish_all(bus: EventBus) -> None:
    bus.publish(HEALTH_CHANGED_TOPIC, health_change())
    bus.publish(ALERT_EVENT_TOPIC, alert_event())
    bus.publish(SECURITY_TOPIC, security_item())


def handle_all(hub: Hub) -> None:
    hub.handle(BusMessage(HEALTH_CHANGED_TOPIC, health_change()))
    hub.handle(BusMessage(ALERT_EVENT_TOPIC, alert_event()))
    hub.handle(BusMessage(SECURITY_TOPIC, security_item()))


# -- the hub's fan-out, with the in-memory network -------------------------------------------


async def test_bus_messages_reach_every_instance_once_and_snapshots_stay_local(
    clock: FakeClock,
) -> None:
    network = InMemoryBackplaneNetwork(clock)
    hubs = {name: make_hub(clock, backplane=network.join(name), instance=name) for name in "ABC"}
    for hub in hubs.values():
        hub.start()
    try:
        inboxes = {name: Inbox(admitted(hub)) for name, hub in hubs.items()}
        alerts_only = Inbox(admitted(hubs["B"], Group.ALERTS))
        handle_all(hubs["A"])
        hubs["A"].take_snapshot()
        hubs["A"].beat()
        for name, inbox in inboxes.items():
            await inbox.pull()
            shared = inbox.of(*SHARED)
            assert [m["type"] for m in shared] == list(SHARED), name
            assert {m["instance"] for m in shared} == {"A"}
            assert inbox.messages[0] == {
                "type": "Welcome",
                "groups": ["alerts", "health", "metrics", "security"],
                "instance": name,
            }
        assert [m["instance"] for m in inboxes["A"].of("MetricsSnapshot")] == ["A"]
        assert inboxes["B"].of("MetricsSnapshot", "Heartbeat") == []
        assert "hunter2" not in inboxes["C"].of("SecurityEvent")[0]["details"]
        await alerts_only.pull()
        assert [m["type"] for m in alerts_only.messages] == ["Welcome", "AlertFired"]
        assert inboxes["B"].of("Backplane") == []  # connected from the start: nothing to say
        assert len(network.sent) == 3
        assert [member.echoes for member in network.members] == [3, 0, 0]
        assert [member.received for member in network.members] == [0, 3, 3]
    finally:
        for hub in hubs.values():
            await stop(hub)
    assert all(member.stopped == 1 for member in network.members)


async def test_clients_are_told_when_only_this_instance_is_shown(clock: FakeClock) -> None:
    network = InMemoryBackplaneNetwork(clock)
    a = make_hub(clock, backplane=network.join("A"), instance="A")
    b = make_hub(clock, backplane=network.join("B"), instance="B")
    a.start()
    b.start()
    try:
        on_b = Inbox(admitted(b, Group.METRICS))  # Backplane belongs to no group
        clock.advance(60)
        network.disconnect()
        handle_all(a)  # not shared, and nobody waits for it
        await on_b.pull()
        down = on_b.of("Backplane")
        assert down == [
            {
                "type": "Backplane",
                "connected": False,
                "since": clock.now().isoformat(),
                "instance": "B",
            }
        ]
        late = Inbox(admitted(b))  # joins during the outage: told at once
        await late.pull()
        assert [m["type"] for m in late.messages] == ["Welcome", "Backplane"]
        assert late.messages[1]["connected"] is False
        assert network.members[0].dropped == 3
        network.reconnect()
        a.handle(BusMessage(HEALTH_CHANGED_TOPIC, health_change("cache")))
        await late.pull()
        assert [m["type"] for m in late.messages[2:]] == ["Backplane", "HealthUpdate"]
        assert late.messages[2]["connected"] is True
        assert late.messages[3]["subject"] == "cache"
        assert network.members[1].reconnects == 1
    finally:
        await stop(a)
        await stop(b)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"message": {"type": "HealthUpdate"}}',  # no origin
        b'{"origin": "X"}',  # no message
        b'{"origin": "", "message": {"type": "HealthUpdate"}}',
        b'{"origin": "X", "message": {"type": ["HealthUpdate"]}}',
        b'{"origin": "X", "message": {"type": "Welcome", "groups": []}}',  # not shared
        b'{"origin": "X", "message": "HealthUpdate"}',
        b"[" * 5000 + b"]" * 5000,  # deeper than the parser goes
        b'{"origin": "X", "message": {"type": "HealthUpdate", "pad": "%s"}}' % (b"x" * 70000),
        b"\xff\xfe not utf-8",
    ],
)
async def test_what_is_not_a_shared_message_is_refused_and_counted(
    clock: FakeClock, payload: bytes
) -> None:
    network = InMemoryBackplaneNetwork(clock)
    hub = make_hub(clock, backplane=network.join("A"), instance="A")
    hub.start()
    try:
        inbox = Inbox(admitted(hub))
        network.inject(payload)
        assert isinstance(decode_envelope(payload), str)
        assert network.members[0].invalid == 1
        network.inject(encode_envelope("X", {"type": "HealthUpdate", "subject": "x"}))
        await inbox.pull()
        assert [m["type"] for m in inbox.messages] == ["Welcome", "HealthUpdate"]
        assert inbox.messages[1]["instance"] == "X"  # from the envelope, whatever it said
    finally:
        await stop(hub)


async def test_the_check_follows_the_backplane(clock: FakeClock) -> None:
    network = InMemoryBackplaneNetwork(clock)
    member = network.join("A")
    check = backplane_check(member)
    assert check.name == CHECK_NAME == "hub-backplane"
    starting = await check.check()  # the first connection: not an outage
    assert starting.status is HealthStatus.HEALTHY
    assert starting.description == "connecting to the in-memory network"
    member.start(lambda message: None, lambda state: None)
    healthy = await check.check()
    assert healthy.status is HealthStatus.HEALTHY
    clock.advance(5)
    network.disconnect()
    degraded = await check.check()
    assert degraded.status is HealthStatus.DEGRADED
    assert "this instance's clients only" in degraded.description
    assert clock.now().isoformat() in degraded.description
    assert degraded.error == "ConnectionError"
    assert degraded.data["status"] == "disconnected"


def test_settings_decide_whether_there_is_a_backplane(clock: FakeClock) -> None:
    url = "redis://:s3cret-pw@127.0.0.1:6399/2"
    none = Settings.model_validate({})
    assert redis_backplane(none, instance="A", clock=clock) is None
    off = Settings.model_validate(
        {"connection_strings": {"redis": url}, "cluster": {"backplane": False}}
    )
    assert redis_backplane(off, instance="A", clock=clock) is None
    on = Settings.model_validate(
        {"connection_strings": {"redis": url}, "cluster": {"backplane_channel": "x:hub"}}
    )
    backplane = redis_backplane(on, instance="A", clock=clock)
    assert isinstance(backplane, RedisBackplane)
    assert backplane.channel == "x:hub"
    assert backplane.target == "127.0.0.1:6399/2"


# -- Redis ------------------------------------------------------------------------------


@asynccontextmanager
async def redis_hubs(
    url: str, clock: FakeClock, channel: str = "test:hub", **options: float
) -> AsyncIterator[tuple[tuple[Hub, EventBus], tuple[Hub, EventBus]]]:
    """Hubs A and B, each with its bus and a Redis backplane on ``channel``, subscribed."""
    pairs = []
    for name in "AB":
        bus = EventBus()
        backplane = RedisBackplane(url, channel, name, clock=clock, **options)
        pairs.append((make_hub(clock, backplane=backplane, instance=name, bus=bus), bus))
    for hub, _ in pairs:
        hub.start()
    try:
        await eventually(
            lambda: all(backplane_of(hub).state.connected for hub, _ in pairs),
            timeout=DEADLINE,
            what="both backplanes subscribed",
        )
        yield pairs[0], pairs[1]
    finally:
        for hub, _ in pairs:
            await stop(hub)


def backplane_of(hub: Hub) -> RedisBackplane:
    assert isinstance(hub.backplane, RedisBackplane)
    return hub.backplane


@pytest.mark.redis
async def test_a_message_of_a_reaches_the_clients_of_b_once_and_its_own_once(
    redis_url: str, clock: FakeClock
) -> None:
    async with redis_hubs(redis_url, clock) as ((a, a_bus), (b, _)):
        on_a, on_b = Inbox(admitted(a)), Inbox(admitted(b))
        publish_all(a_bus)
        a_bus.publish(HEALTH_CHANGED_TOPIC, health_change("marker"))
        await eventually(on_b.has("HealthUpdate", subject="marker"), timeout=DEADLINE, what="B")
        # A heard all four back (and ignored them): nothing more can come through Redis.
        await eventually(
            lambda: backplane_of(a).state.echoes == 4, timeout=DEADLINE, what="A's echoes"
        )
        await on_a.pull()
        for inbox in (on_a, on_b):
            shared = inbox.of(*SHARED)
            assert [m["type"] for m in shared] == [*SHARED, "HealthUpdate"]
            assert {m["instance"] for m in shared} == {"A"}
        assert on_b.of("SecurityEvent")[0] == on_a.of("SecurityEvent")[0]
        assert "hunter2" not in on_b.of("SecurityEvent")[0]["details"]
        state_a, state_b = backplane_of(a).state, backplane_of(b).state
        assert (state_a.published, state_a.received, state_a.dropped) == (4, 0, 0)
        assert (state_b.published, state_b.received, state_b.invalid) == (0, 4, 0)
        assert a.errors == b.errors == backplane_of(b).errors == 0


@pytest.mark.redis
async def test_redis_lost_and_back(isolated_redis_server: RedisServer, clock: FakeClock) -> None:
    server = isolated_redis_server
    async with redis_hubs(server.url, clock, initial_backoff=0.05, max_backoff=0.5) as (
        (a, a_bus),
        (b, _),
    ):
        on_a, on_b = Inbox(admitted(a)), Inbox(admitted(b))
        check = backplane_check(backplane_of(a))
        assert (await check.check()).status is HealthStatus.HEALTHY
        with structlog.testing.capture_logs() as logs:
            server.kill()
            await eventually(
                on_a.has("Backplane", connected=False, instance="A"),
                timeout=DEADLINE,
                what="A's clients told",
            )
            a.handle(BusMessage(HEALTH_CHANGED_TOPIC, health_change("during")))  # no error
            result = await check.check()
            assert result.status is HealthStatus.DEGRADED
            assert "this instance's clients only" in result.description
            assert result.error is not None
            # Retries go on quietly: one line for the outage, not one per attempt.
            await eventually(
                lambda: backplane_of(a).state.failures >= 4, timeout=DEADLINE, what="retries"
            )
            server.restart()
            await eventually(
                lambda: backplane_of(a).state.connected and backplane_of(b).state.connected,
                timeout=DEADLINE,
                what="both reconnected",
            )
        events = [entry["event"] for entry in logs if entry["event"].startswith("hub_backplane")]
        assert events.count("hub_backplane_disconnected") == 2  # one per instance
        assert events.count("hub_backplane_reconnected") == 2
        await eventually(
            on_b.has("Backplane", connected=True, instance="B"), timeout=DEADLINE, what="B told"
        )
        a_bus.publish(HEALTH_CHANGED_TOPIC, health_change("after"))
        await eventually(on_b.has("HealthUpdate", subject="after"), timeout=DEADLINE, what="flows")
        assert (await check.check()).status is HealthStatus.HEALTHY
        assert backplane_of(a).state.reconnects == 1
        await on_a.pull()
        assert [m["connected"] for m in on_a.of("Backplane")] == [False, True]


@pytest.mark.redis
async def test_an_unreachable_server_never_shows_its_password(clock: FakeClock) -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{find_free_port()}/0"  # nobody listens there
    backplane = RedisBackplane(url, "test:hub", "A", clock=clock, initial_backoff=0.01)
    states = []
    with structlog.testing.capture_logs() as logs:
        backplane.start(lambda message: None, states.append)
        try:
            for seq in range(5):
                backplane.publish({"type": "HealthUpdate", "subject": f"s{seq}"})  # never blocks
            await eventually(
                lambda: backplane.state.failures >= 3, timeout=DEADLINE, what="retries"
            )
            result = await backplane_check(backplane).check()
        finally:
            await backplane.stop()
    assert result.status is HealthStatus.DEGRADED
    assert [state.status for state in states] == [BackplaneStatus.DISCONNECTED]
    assert backplane.state.queued == 5  # kept for when it comes back
    assert result.data["target"] == backplane.target
    shown = json.dumps([logs, result.description, dict(result.data), result.error], default=str)
    assert "s3cret-pw" not in shown
    assert [entry["event"] for entry in logs] == ["hub_backplane_disconnected"]


@pytest.mark.redis
async def test_garbage_on_the_channel_is_dropped_and_counted(
    redis_url: str, clock: FakeClock
) -> None:
    async with redis_hubs(redis_url, clock, channel="test:garbage") as ((a, _), (b, _)):
        on_b = Inbox(admitted(b))
        garbage = [
            b"not json",
            b'{"origin": "X"}',
            b'{"message": {"type": "HealthUpdate"}}',
            b'{"origin": "X", "message": {"type": "Welcome", "groups": []}}',
            b"[" * 5000,
            encode_envelope("X", {"type": "HealthUpdate", "pad": "x" * 70000}),
        ]
        async with aioredis.Redis.from_url(redis_url) as stranger:
            for payload in garbage:
                await stranger.publish("test:garbage", payload)
            await stranger.publish(
                "test:garbage", encode_envelope("X", {"type": "HealthUpdate", "subject": "ok"})
            )
        await eventually(on_b.has("HealthUpdate", subject="ok"), timeout=DEADLINE, what="ok")
        state = backplane_of(b).state
        assert state.invalid == len(garbage)
        assert state.connected
        assert state.failures == 0
        assert on_b.of("HealthUpdate")[0]["instance"] == "X"
        assert backplane_of(a).state.invalid == len(garbage)


async def test_a_full_outgoing_queue_loses_the_oldest(clock: FakeClock) -> None:
    url = f"redis://127.0.0.1:{find_free_port()}/0"
    backplane = RedisBackplane(url, "test:hub", "A", clock=clock, queue_size=3)
    for seq in range(5):
        backplane.publish({"type": "HealthUpdate", "subject": f"s{seq}"})
    backplane.publish({"type": "HealthUpdate", "pad": "x" * 70000})  # too large
    backplane.publish({"type": "HealthUpdate", "at": object()})  # not JSON
    state = backplane.state
    assert (state.queued, state.dropped) == (3, 4)
    assert [json.loads(data)["message"]["subject"] for data in backplane._outbox] == [
        "s2",
        "s3",
        "s4",
    ]
    await backplane.stop()  # never started: closes its client only


@pytest.mark.redis
async def test_a_quiet_channel_is_kept_alive_and_a_frozen_server_is_noticed(
    isolated_redis_server: RedisServer, clock: FakeClock
) -> None:
    server = isolated_redis_server
    backplane = RedisBackplane(
        server.url, "test:hub", "A", clock=clock, keepalive=0.05, timeout=0.5, max_backoff=0.2
    )
    backplane.start(lambda message: None, lambda state: None)
    try:
        await eventually(lambda: backplane.state.connected, timeout=DEADLINE, what="connected")
        async with aioredis.Redis.from_url(server.url) as admin:

            async def pinged() -> bool:
                stats = await admin.info("commandstats")
                return int(stats.get("cmdstat_ping", {}).get("calls", 0)) >= 3

            await eventually(pinged, timeout=DEADLINE, what="keep-alive pings")
        assert backplane.state.connected
        assert backplane.state.failures == 0  # answered pings are not silence
        assert server._proc is not None
        pid = server._proc.pid
        os.kill(pid, signal.SIGSTOP)  # the socket stays open; nothing answers
        try:
            await eventually(
                lambda: backplane.state.status is BackplaneStatus.DISCONNECTED,
                timeout=DEADLINE,
                what="silence noticed",
            )
            assert backplane.state.last_error in ("BackplaneSilent", "TimeoutError")
        finally:
            os.kill(pid, signal.SIGCONT)
        await eventually(lambda: backplane.state.connected, timeout=DEADLINE, what="back")
        assert backplane.state.reconnects == 1
    finally:
        await backplane.stop()
