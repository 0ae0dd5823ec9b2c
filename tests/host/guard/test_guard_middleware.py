"""SecurityGuardMiddleware before a tiny Starlette app, driven through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.testing import capture_logs

from digitalme.host.guard import SecurityGuardMiddleware
from digitalme.host.guard.rate_limit import RateLimiter
from digitalme.host.security_events import SecurityEvent, SecurityEvents, SecurityEventType
from digitalme.settings import SecuritySettings

MIB = 1 << 20
XSS_BODY = {"name": '<script>alert("xss")</script>'}


class Handlers:
    """The application behind the guard; it records every request it gets to see."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.bodies: list[bytes] = []
        self.app = Starlette(
            routes=[
                Route("/echo", self.echo, methods=["POST", "PUT"]),
                Route("/items/{rest:path}", self.item),
                Route("/items", self.item),
            ]
        )

    async def echo(self, request: Request) -> Response:
        self.calls.append(request.url.path)
        body = await request.body()
        self.bodies.append(body)
        return Response(body, media_type="application/octet-stream")

    async def item(self, request: Request) -> Response:
        self.calls.append(request.url.path)
        return JSONResponse({"client_ip": request.state.client_ip})


def identify_by_header(scope: Scope) -> str | None:
    """Stands in for the app's credential parser: ``X-Test-Identity: user:42``."""
    for name, value in scope["headers"]:
        if name == b"x-test-identity":
            return str(value.decode())
    return None


def peer_from_header(app: ASGIApp) -> ASGIApp:
    """Lets a test choose the socket peer per request (``X-Test-Peer``) as a server would."""

    async def with_peer(scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope.get("headers", ()):
            if name == b"x-test-peer":
                scope = {**scope, "client": (value.decode(), 40000)}
        await app(scope, receive, send)

    return with_peer


Build = Callable[..., tuple[httpx.AsyncClient, Handlers]]


@pytest.fixture
async def build(events: SecurityEvents) -> AsyncIterator[Build]:
    """Builds guard + app with the given SecuritySettings fields; closes what it built."""
    clients: list[httpx.AsyncClient] = []
    limiters: list[RateLimiter] = []

    def make(redis_url: str | None = None, **security: Any) -> tuple[httpx.AsyncClient, Handlers]:
        handlers = Handlers()
        settings = SecuritySettings(**security)
        limiter = RateLimiter.from_settings(settings, redis_url)
        limiters.append(limiter)
        guard = SecurityGuardMiddleware(
            handlers.app,
            settings=settings,
            events=events,
            identify=identify_by_header,
            rate_limiter=limiter,
        )
        transport = httpx.ASGITransport(app=peer_from_header(guard), client=("192.0.2.10", 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://guarded.test")
        clients.append(client)
        return client, handlers

    yield make
    for client in clients:
        await client.aclose()
    for limiter in limiters:
        await limiter.aclose()


def types_of(recorded: list[SecurityEvent]) -> list[SecurityEventType]:
    return [event.type for event in recorded]


async def test_a_burst_over_the_ip_limit_gets_429_with_retry_after(
    build: Build, recorded: list[SecurityEvent]
) -> None:
    client, handlers = build(rate_limit_per_ip="100/minute")
    responses = [await client.get("/items/1") for _ in range(200)]

    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 100
    assert statuses.count(429) == 100
    assert statuses[:100] == [200] * 100
    assert len(handlers.calls) == 100
    for refused in responses[100:]:
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["error"] == "rate_limited"
    assert types_of(recorded) == [SecurityEventType.RATE_LIMIT] * 100
    event = recorded[0]
    assert (event.client_ip, event.path, event.user_id) == ("192.0.2.10", "/items/1", None)


async def test_a_concurrent_burst_is_limited_exactly_and_never_errors(build: Build) -> None:
    client, handlers = build(rate_limit_per_ip="100/minute")
    responses = await asyncio.gather(*(client.get("/items/1") for _ in range(200)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 100 + [429] * 100
    assert len(handlers.calls) == 100


async def test_a_users_budget_follows_the_identity_across_addresses(
    build: Build, recorded: list[SecurityEvent]
) -> None:
    client, _ = build(rate_limit_per_ip="5/minute", rate_limit_per_user="3/minute")
    user = {"x-test-identity": "user:42"}
    statuses = [
        (
            await client.get("/items/1", headers={**user, "x-test-peer": f"198.51.100.{n}"})
        ).status_code
        for n in range(1, 6)
    ]
    assert statuses == [200, 200, 200, 429, 429]
    assert recorded[-1].user_id == 42
    assert recorded[-1].properties["identity"] == "user:42"

    # The same addresses still serve anonymous callers and other users.
    anonymous = await client.get("/items/1", headers={"x-test-peer": "198.51.100.4"})
    other = await client.get(
        "/items/1", headers={"x-test-identity": "key:abcd1234", "x-test-peer": "198.51.100.5"}
    )
    assert (anonymous.status_code, other.status_code) == (200, 200)


async def test_a_user_cannot_escape_the_ip_limit_by_presenting_credentials(build: Build) -> None:
    client, _ = build(rate_limit_per_ip="2/minute", rate_limit_per_user="100/minute")
    statuses = [
        (await client.get("/items/1", headers={"x-test-identity": f"key:{n:08x}"})).status_code
        for n in range(4)
    ]
    assert statuses == [200, 200, 429, 429]


async def test_behind_a_trusted_proxy_the_forwarded_client_is_limited(
    build: Build, recorded: list[SecurityEvent]
) -> None:
    client, _ = build(rate_limit_per_ip="2/minute", trusted_proxies=["10.0.0.0/8"])
    via_proxy = {"x-test-peer": "10.0.0.2"}

    first = await client.get("/items/1", headers={**via_proxy, "x-forwarded-for": "203.0.113.5"})
    assert first.json() == {"client_ip": "203.0.113.5"}
    forged = {"x-forwarded-for": "1.2.3.4, 203.0.113.5"}  # a made-up hop on the left
    assert (await client.get("/items/1", headers={**via_proxy, **forged})).status_code == 200
    assert (await client.get("/items/1", headers={**via_proxy, **forged})).status_code == 429
    assert recorded[-1].client_ip == "203.0.113.5"

    # Another client behind the same proxy has its own budget ...
    other = await client.get("/items/1", headers={**via_proxy, "x-forwarded-for": "203.0.113.6"})
    assert other.json() == {"client_ip": "203.0.113.6"}
    # ... and an untrusted peer's header is not believed.
    direct = await client.get("/items/1", headers={"x-test-peer": "198.51.100.9", **forged})
    assert direct.json() == {"client_ip": "198.51.100.9"}


async def test_an_xss_body_is_refused_before_the_handler(
    build: Build, recorded: list[SecurityEvent]
) -> None:
    client, handlers = build()
    response = await client.post("/echo", json=XSS_BODY)

    assert response.status_code == 400
    assert response.json()["error"] == "threat_detected"
    assert response.json()["message"] == "request refused: XssScript detected"
    assert "script" not in response.text
    assert "alert" not in response.text
    assert handlers.calls == []
    assert types_of(recorded) == [SecurityEventType.XSS_SCRIPT]
    assert recorded[0].properties["location"] == "body"
    assert recorded[0].path == "/echo"
    assert "alert" not in recorded[0].details


async def test_sql_injection_in_the_query_is_refused(
    build: Build, recorded: list[SecurityEvent]
) -> None:
    client, handlers = build()
    response = await client.get("/items", params={"q": "' OR '1'='1"})
    assert response.status_code == 400
    assert response.json()["message"] == "request refused: SqlInjection detected"
    assert "'1'='1" not in response.text
    assert handlers.calls == []
    assert types_of(recorded) == [SecurityEventType.SQL_INJECTION]


async def test_path_traversal_in_the_path_is_refused_without_echoing_the_path(
    build: Build, recorded: list[SecurityEvent]
) -> None:
    client, handlers = build()
    response = await client.get("/items/..%2f..%2fetc%2fpasswd")
    assert response.status_code == 400
    assert response.json()["message"] == "request refused: PathTraversal detected"
    assert "passwd" not in response.text
    assert handlers.calls == []
    assert types_of(recorded) == [SecurityEventType.PATH_TRAVERSAL]
    assert recorded[0].path is None  # the path is the payload
    assert recorded[0].properties["location"] == "path"


async def test_a_body_announced_too_large_is_refused_unread(
    build: Build, recorded: list[SecurityEvent]
) -> None:
    client, handlers = build()
    response = await client.post("/echo", content=b"x" * (2 * MIB))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert handlers.calls == []
    assert types_of(recorded) == [SecurityEventType.PAYLOAD_TOO_LARGE]


async def test_a_streamed_body_is_refused_once_it_grows_too_large(
    build: Build, recorded: list[SecurityEvent]
) -> None:
    client, handlers = build()
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(32):
            sent += 64 * 1024
            yield b"y" * (64 * 1024)

    response = await client.post("/echo", content=chunks())
    assert response.status_code == 413
    assert handlers.calls == []
    assert sent < 2 * MIB  # reading stopped as soon as the limit was crossed
    assert types_of(recorded) == [SecurityEventType.PAYLOAD_TOO_LARGE]


async def test_a_benign_json_body_reaches_the_handler_byte_for_byte(
    build: Build, recorded: list[SecurityEvent]
) -> None:
    client, handlers = build()
    body = b'{"name":  "Tom & Jerry",\n "bio": "rock \'n\' roll \xf0\x9f\x8e\xb8", "n": [1, 2.50]}'
    response = await client.post(
        "/echo", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert response.content == body
    assert handlers.bodies == [body]
    assert recorded == []


async def test_a_streamed_benign_body_is_reassembled_for_the_handler(build: Build) -> None:
    client, handlers = build()
    parts = [json.dumps({"part": n, "text": "hello"}).encode() for n in range(5)]

    async def chunks() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    response = await client.put("/echo", content=chunks())
    assert response.status_code == 200
    assert handlers.bodies == [b"".join(parts)]


async def test_invalid_json_is_left_for_the_handler_to_reject(build: Build) -> None:
    client, handlers = build()
    body = b"{'name': '<script>"
    response = await client.post(
        "/echo", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert handlers.bodies == [body]


async def test_only_json_bodies_are_scanned(build: Build) -> None:
    client, handlers = build()
    body = b"<script>alert(1)</script>"
    response = await client.post("/echo", content=body, headers={"content-type": "text/html"})
    assert response.status_code == 200
    assert handlers.bodies == [body]


async def test_the_switches_turn_the_checks_off(
    build: Build, recorded: list[SecurityEvent]
) -> None:
    client, handlers = build(
        rate_limit_per_ip="1/minute", rate_limit_enabled=False, threat_detection_enabled=False
    )
    for _ in range(3):
        assert (await client.post("/echo", json=XSS_BODY)).status_code == 200
    assert (await client.get("/items", params={"q": "' or 1=1--"})).status_code == 200
    assert len(handlers.calls) == 4
    assert recorded == []
    # The size limit is not a switch: it protects memory.
    assert (await client.post("/echo", content=b"z" * (2 * MIB))).status_code == 413


async def test_an_unreachable_redis_fails_open(build: Build) -> None:
    client, handlers = build(redis_url=closed_port_url(), rate_limit_per_ip="2/minute")
    with capture_logs() as logs:
        statuses = [(await client.get("/items/1")).status_code for _ in range(10)]
    assert statuses == [200] * 10
    assert len(handlers.calls) == 10
    assert [entry["event"] for entry in logs] == ["rate_limit_storage_unavailable"]


def closed_port_url() -> str:
    """A Redis URL on a loopback port with nothing listening (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


# Direct ASGI calls, for what httpx's transport cannot show.


async def test_after_the_replayed_body_receive_reaches_the_server(events: SecurityEvents) -> None:
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        seen.append(await receive())  # a handler waiting for the client to leave
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b" 1}", "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return incoming.pop(0)

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    guard = SecurityGuardMiddleware(
        app, settings=SecuritySettings(), events=events, identify=identify_by_header
    )
    scope = http_scope("POST", headers=[(b"content-type", b"application/json")])
    await guard(scope, receive, send)

    assert seen == [
        {"type": "http.request", "body": b'{"a": 1}', "more_body": False},
        {"type": "http.disconnect"},
    ]
    assert sent[0]["status"] == 204
    assert scope["state"] == {"client_ip": "192.0.2.10"}


async def test_a_client_that_leaves_mid_body_is_not_served(events: SecurityEvents) -> None:
    called = False

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal called
        called = True

    incoming: list[Message] = [
        {"type": "http.request", "body": b"partial", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        raise AssertionError("nothing should be sent to a departed client")

    guard = SecurityGuardMiddleware(
        app, settings=SecuritySettings(), events=events, identify=identify_by_header
    )
    await guard(http_scope("POST"), receive, send)
    assert not called


async def test_websockets_get_the_client_ip_and_lifespan_passes_through(
    events: SecurityEvents,
) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})

    guard = SecurityGuardMiddleware(
        app,
        settings=SecuritySettings(trusted_proxies=["10.0.0.0/8"]),
        events=events,
        identify=identify_by_header,
    )
    websocket: Scope = {
        "type": "websocket",
        "path": "/live",
        "headers": [(b"x-forwarded-for", b"203.0.113.7")],
        "client": ("10.0.0.3", 5000),
        "state": {"request_id": "abc"},
    }
    await guard(websocket, _never_called, _never_called)
    assert scopes[0]["state"] == {"request_id": "abc", "client_ip": "203.0.113.7"}

    lifespan_in: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    lifespan_out: list[Message] = []

    async def receive() -> Message:
        return lifespan_in.pop(0)

    async def send(message: Message) -> None:
        lifespan_out.append(message)

    await guard({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in lifespan_out] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert "state" not in scopes[1]


async def _never_called(*_: Any) -> Any:
    raise AssertionError("not expected")


def http_scope(method: str, headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "headers": headers or [],
        "client": ("192.0.2.10", 40000),
        "server": ("guarded.test", 80),
    }
