"""The live hub through the real app: uvicorn on loopback, real WebSocket and SSE clients."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from accounts import Account, MakeAccount
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.health.model import HealthStatus
from digitalme.monitoring.health.prober import HEALTH_CHANGED_TOPIC, HealthChange
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import Role
from polling import eventually
from servers import find_free_port

DEADLINE = 15.0  # seconds to wait for a message: a bound, not a timing assertion
Message = dict[str, Any]

MANUAL_ALERT = {
    "title": "Disk almost full",
    "description": "db-1 has 2% free",
    "severity": "High",
    "category": "Availability",
}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the hub touches the host's database only to authenticate."""
    return f"sqlite+aiosqlite:///{tmp_path / 'host.db'}"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"dashboard": {"snapshot_interval": 0.1, "max_connections": 4}}


@pytest.fixture
async def server(app: FastAPI) -> AsyncIterator[str]:
    """The app (its lifespan run by the ``app`` fixture) served on a free loopback port."""
    port = find_free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    instance = uvicorn.Server(config)
    task = asyncio.create_task(instance.serve())
    await eventually(lambda: instance.started, timeout=DEADLINE, what="uvicorn started")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        await task


@pytest.fixture
async def admin(make_account: MakeAccount) -> Account:
    account: Account = await make_account(Role.ADMIN)
    return account


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{server}", timeout=DEADLINE) as client:
        yield client


@asynccontextmanager
async def hub_socket(server: str, token: str | None = None) -> AsyncIterator[ClientConnection]:
    query = "" if token is None else f"?access_token={token}"
    async with connect(f"ws://{server}/hubs/metrics{query}", open_timeout=DEADLINE) as ws:
        yield ws


async def receive(ws: ClientConnection) -> Message:
    message: Message = json.loads(await ws.recv())
    return message


async def until(
    ws: ClientConnection,
    kind: str,
    *,
    what: str,
    where: Callable[[Message], bool] = lambda _: True,
    seen: list[Message] | None = None,
) -> Message:
    """The first message of type ``kind`` matching ``where``; the ones before go to ``seen``."""
    try:
        async with asyncio.timeout(DEADLINE):
            while True:
                message = await receive(ws)
                if message["type"] == kind and where(message):
                    return message
                if seen is not None:
                    seen.append(message)
    except TimeoutError:
        raise AssertionError(f"not within {DEADLINE:g} s: {what}") from None


async def read_to_the_end(ws: ClientConnection) -> None:
    async with asyncio.timeout(DEADLINE):
        while True:
            await ws.recv()


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes; its close code."""
    with pytest.raises(ConnectionClosed):
        await read_to_the_end(ws)
    return ws.close_code


def health_change(subject: str, description: str = "test") -> HealthChange:
    return HealthChange(
        subject, HealthStatus.HEALTHY, HealthStatus.UNHEALTHY, FakeClock().now(), description
    )


async def test_an_admin_authenticates_by_query_or_by_first_message(
    server: str, admin: Account, monitoring: Monitoring
) -> None:
    async with hub_socket(server, admin.token) as by_query:
        welcome = await receive(by_query)
        assert welcome == {
            "type": "Welcome",
            "groups": ["alerts", "health", "metrics", "security"],
            "instance": monitoring.instance,
        }
        async with hub_socket(server) as by_message:
            await by_message.send(json.dumps({"type": "auth", "token": admin.token}))
            assert (await receive(by_message))["type"] == "Welcome"
            await by_message.send(json.dumps({"type": "ping"}))
            await until(by_message, "Pong", what="Pong")
            # Stopping the hub closes every client with 1001.
            await monitoring.hub.stop()
            assert await close_code(by_message) == 1001
        assert await close_code(by_query) == 1001


async def test_no_bad_or_late_credentials_are_4401_and_a_user_is_4403(
    server: str, admin: Account, make_account: MakeAccount, monitoring: Monitoring
) -> None:
    user = await make_account(Role.USER)
    async with hub_socket(server, "not-a-token") as ws:
        assert await close_code(ws) == 4401
    async with hub_socket(server) as ws:
        await ws.send(json.dumps({"type": "join", "group": "alerts"}))  # not an auth message
        assert await close_code(ws) == 4401
    monitoring.hub.auth_timeout = 0.2
    async with hub_socket(server) as ws:  # says nothing
        assert await close_code(ws) == 4401
    async with hub_socket(server, user.token) as ws:
        assert await close_code(ws) == 4403
    async with hub_socket(server) as ws:
        await ws.send(json.dumps({"type": "auth", "token": user.token}))
        assert await close_code(ws) == 4403
    assert monitoring.hub.clients == {}


async def test_join_and_leave_choose_the_groups_alerts_fire_and_resolve(
    server: str, admin: Account, http: httpx.AsyncClient, monitoring: Monitoring
) -> None:
    async with hub_socket(server, admin.token) as ws:
        await until(ws, "Welcome", what="Welcome")
        await ws.send(json.dumps({"type": "join", "group": "alerts"}))
        joined = await until(ws, "Joined", what="Joined")
        assert joined["groups"] == ["alerts"]
        monitoring.bus.publish(HEALTH_CHANGED_TOPIC, health_change("hidden"))
        created = await http.post("/api/alerts", json=MANUAL_ALERT, headers=admin.headers)
        assert created.status_code == 201, created.text
        alert_id = created.json()["alert"]["id"]
        seen: list[Message] = []
        fired = await until(ws, "AlertFired", what="AlertFired", seen=seen)
        assert fired["alert"]["alert_id"] == alert_id
        assert fired["alert"]["kind"] == "fired"
        assert fired["alert"]["title"] == "Disk almost full"
        resolved_response = await http.post(
            f"/api/alerts/{alert_id}/resolve", headers=admin.headers
        )
        assert resolved_response.status_code == 200
        resolved = await until(ws, "AlertResolved", what="AlertResolved", seen=seen)
        assert resolved["alert"]["resolved_by"] == admin.email
        assert {m["type"] for m in seen} <= {"Heartbeat"}  # no health, no snapshots

        await ws.send(json.dumps({"type": "leave", "group": "alerts"}))
        await ws.send(json.dumps({"type": "join", "group": "health"}))
        joined = await until(ws, "Joined", what="Joined health")
        assert joined["groups"] == ["health"]
        monitoring.bus.publish(HEALTH_CHANGED_TOPIC, health_change("database", "refused"))
        update = await until(ws, "HealthUpdate", what="HealthUpdate")
        assert update["subject"] == "database"
        assert (update["status"], update["previous"]) == ("Unhealthy", "Healthy")
        assert update["description"] == "refused"
        assert update["change"] is True


async def test_a_snapshot_counts_the_requests_made_just_before(
    server: str, admin: Account, http: httpx.AsyncClient
) -> None:
    async with hub_socket(server, admin.token) as ws:
        first = await until(ws, "MetricsSnapshot", what="a first snapshot")
        for _ in range(3):
            assert (await http.get("/api/alerts", headers=admin.headers)).status_code == 200
        total = first["requests_total"] + 3
        snapshot = await until(
            ws,
            "MetricsSnapshot",
            what="a snapshot counting the three requests",
            where=lambda m: m["requests_total"] >= total,
        )
        assert snapshot["sequence"] > first["sequence"]
        assert snapshot["requests_1m"] >= 3
        assert snapshot["p95_ms_1m"] is not None
        assert snapshot["error_rate_1m"] == 0
        assert snapshot["active_alerts"] == 0
        assert snapshot["connections"] == 1


async def test_a_sql_injection_attempt_is_a_security_event(
    server: str, admin: Account, http: httpx.AsyncClient
) -> None:
    async with hub_socket(server, admin.token) as ws:
        await until(ws, "Welcome", what="Welcome")
        await ws.send(json.dumps({"type": "join", "group": "security"}))
        await until(ws, "Joined", what="Joined")
        refused = await http.get("/api/alerts", params={"q": "' OR '1'='1"})
        assert refused.status_code == 400
        event = await until(ws, "SecurityEvent", what="SecurityEvent")
        assert event["event_type"] == "SqlInjection"
        assert event["severity"] == "Critical"
        assert event["client_ip"] == "127.0.0.1"
        assert isinstance(event["details"], str)
        assert event["at"]


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        ("not json", 1003),
        (json.dumps({"type": "subscribe"}), 1008),
        (json.dumps({"type": "join", "group": "everything"}), 1008),
        (json.dumps({"type": "ping", "pad": "x" * 5000}), 1008),
        (b"\x00\x01", 1003),
    ],
)
async def test_garbage_is_an_error_then_a_close(
    server: str, admin: Account, sent: str | bytes, code: int, monitoring: Monitoring
) -> None:
    async with hub_socket(server, admin.token) as ws:
        await until(ws, "Welcome", what="Welcome")
        await ws.send(sent)
        error = await until(ws, "Error", what="Error")
        assert error["message"]
        assert await close_code(ws) == code
    await eventually(lambda: not monitoring.hub.clients, timeout=DEADLINE, what="forgotten")
    assert monitoring.hub.errors == 0


async def test_beyond_max_connections_the_handshake_is_refused_with_1013(
    server: str, admin: Account, monitoring: Monitoring
) -> None:
    async with (
        hub_socket(server, admin.token) as a,
        hub_socket(server, admin.token) as b,
        hub_socket(server, admin.token) as c,
        hub_socket(server, admin.token) as d,
    ):
        for ws in (a, b, c, d):
            await until(ws, "Welcome", what="Welcome")
        async with hub_socket(server, admin.token) as refused:
            assert await close_code(refused) == 1013
        await until(a, "MetricsSnapshot", what="the others carry on")
    await eventually(lambda: not monitoring.hub.clients, timeout=DEADLINE, what="all gone")
    async with hub_socket(server, admin.token) as again:
        await until(again, "Welcome", what="a place again")


@contextmanager
def never_reading_socket(server: str, token: str) -> Iterator[socket.socket]:
    """A WebSocket handshake on a raw socket with a tiny receive buffer that is never read."""
    host, port = server.split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        (
            f"GET /hubs/metrics?access_token={token} HTTP/1.1\r\n"
            f"Host: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    try:
        yield sock
    finally:
        sock.close()


async def test_a_client_that_never_reads_does_not_delay_another_and_is_dropped(
    server: str, admin: Account, monitoring: Monitoring, clock: FakeClock
) -> None:
    hub = monitoring.hub
    async with hub_socket(server, admin.token) as reader:
        await until(reader, "Welcome", what="Welcome")
        before = set(hub.clients)
        with never_reading_socket(server, admin.token):
            await eventually(
                lambda: sum(c.authenticated for c in hub.clients.values()) == 2,
                timeout=DEADLINE,
                what="the stuck client admitted",
            )
            [stuck_id] = set(hub.clients) - before
            stuck_client = hub.clients[stuck_id]
            padding = "x" * 4000
            rounds = 0
            # Flood until the stuck client's queue is full (its socket and buffers are).
            while stuck_client.dropped == 0:
                rounds += 1
                assert rounds < 500, "the stuck client never filled its queue"
                for index in range(50):
                    monitoring.bus.publish(
                        HEALTH_CHANGED_TOPIC, health_change(f"flood-{rounds}-{index}", padding)
                    )
                await asyncio.sleep(0.01)
            monitoring.bus.publish(HEALTH_CHANGED_TOPIC, health_change("marker"))
            # The reader gets the marker while the stuck client is still connected and stuck.
            await until(
                reader, "HealthUpdate", what="the marker", where=lambda m: m["subject"] == "marker"
            )
            assert stuck_client.ident in hub.clients
            assert not stuck_client.closed.is_set()
            clock.advance(monitoring.settings.dashboard.client_stall_timeout + 1)
            await eventually(
                lambda: stuck_client.ident not in hub.clients,
                timeout=DEADLINE,
                what="the stuck client disconnected",
            )
            assert stuck_client.close_code == 1008
            assert hub.kicked == 1
        # The reader is still served.
        await until(
            reader,
            "MetricsSnapshot",
            what="a snapshot counting only the reader",
            where=lambda m: m["connections"] == 1,
        )


async def sse_events(response: httpx.Response) -> AsyncIterator[Message]:
    kind: str | None = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            message: Message = json.loads(line.removeprefix("data: "))
            assert message["type"] == kind
            yield message


async def next_sse(
    events: AsyncIterator[Message], kind: str, *, what: str, seen: list[Message] | None = None
) -> Message:
    try:
        async with asyncio.timeout(DEADLINE):
            async for message in events:
                if message["type"] == kind:
                    return message
                if seen is not None:
                    seen.append(message)
    except TimeoutError:
        pass
    raise AssertionError(f"not within {DEADLINE:g} s: {what}")


async def test_sse_streams_the_same_messages_for_the_chosen_groups(
    server: str, admin: Account, http: httpx.AsyncClient, monitoring: Monitoring
) -> None:
    url = "/hubs/metrics/events"
    async with http.stream(
        "GET", url, params={"groups": "health,alerts"}, headers=admin.headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        welcome = await next_sse(events, "Welcome", what="Welcome")
        assert welcome["groups"] == ["alerts", "health"]
        monitoring.bus.publish(HEALTH_CHANGED_TOPIC, health_change("database", "refused"))
        seen: list[Message] = []
        update = await next_sse(events, "HealthUpdate", what="HealthUpdate", seen=seen)
        assert update["subject"] == "database"
        created = await http.post("/api/alerts", json=MANUAL_ALERT, headers=admin.headers)
        assert created.status_code == 201
        fired = await next_sse(events, "AlertFired", what="AlertFired", seen=seen)
        assert fired["alert"]["alert_id"] == created.json()["alert"]["id"]
        assert {m["type"] for m in seen} <= {"Heartbeat"}  # no snapshots: not chosen
        await monitoring.hub.stop()
        close = await next_sse(events, "Close", what="Close")
        assert close["code"] == 1001


async def test_sse_authenticates_by_query_and_refuses_like_the_admin_api(
    server: str, admin: Account, http: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    url = "/hubs/metrics/events"
    user = await make_account(Role.USER)
    assert (await http.get(url)).status_code == 401
    assert (await http.get(url, params={"access_token": "nope"})).status_code == 401
    assert (await http.get(url, headers=user.headers)).status_code == 403
    unknown = await http.get(url, params={"groups": "everything"}, headers=admin.headers)
    assert unknown.status_code == 422
    async with http.stream("GET", url, params={"access_token": admin.token}) as response:
        assert response.status_code == 200
        events = sse_events(response)
        await next_sse(events, "Welcome", what="Welcome")
        snapshot = await next_sse(events, "MetricsSnapshot", what="a snapshot")
        assert snapshot["sequence"] >= 1


async def test_sse_counts_against_max_connections(
    server: str, admin: Account, http: httpx.AsyncClient, monitoring: Monitoring
) -> None:
    url = "/hubs/metrics/events"
    async with (
        http.stream("GET", url, headers=admin.headers) as a,
        http.stream("GET", url, headers=admin.headers) as b,
        http.stream("GET", url, headers=admin.headers) as c,
        http.stream("GET", url, headers=admin.headers) as d,
    ):
        assert {r.status_code for r in (a, b, c, d)} == {200}
        refused = await http.get(url, headers=admin.headers)
        assert refused.status_code == 503
        assert refused.json()["error"] == "too_many_clients"
        async with hub_socket(server, admin.token) as ws:
            assert await close_code(ws) == 1013
