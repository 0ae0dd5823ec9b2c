"""Outgoing HTTP as dependencies: a real server on loopback, real httpx and anthropic clients."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import httpx
import pytest

from digitalme.monitoring.telemetry.buffer import ItemBuffer
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.context import (
    TelemetryContext,
    current_context,
    new_span_id,
    new_trace_id,
)
from digitalme.monitoring.telemetry.instrumentation.http_client import (
    SPAN_ID_PROPERTY,
    anthropic_http_client,
    instrumented_async_client,
    instrumented_client,
)
from digitalme.monitoring.telemetry.items import DependencyItem
from digitalme.monitoring.testing import FakeClock
from fake_anthropic import FakeAnthropic

SLOW_BODY_SECONDS = 0.3
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01")


def dependencies(buffer: ItemBuffer) -> list[DependencyItem]:
    items = buffer.drain()
    assert all(isinstance(item, DependencyItem) for item in items), items
    return [item for item in items if isinstance(item, DependencyItem)]


# -- a real HTTP server on loopback -----------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class HttpServer:
    """``/status/<code>``; ``/hangup`` closes without answering; ``/truncated``
    promises 100 bytes and sends 10; ``/slow-body`` sends half its body, waits
    ``SLOW_BODY_SECONDS`` and sends the rest; anything else is 200 ``ok``."""

    base_url: str
    received: list[Received] = field(default_factory=list)

    @property
    def netloc(self) -> str:
        return self.base_url.removeprefix("http://")


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    state: HttpServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # One request per connection: no handler thread idles on a kept-alive socket.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.do_GET()

    def do_GET(self) -> None:
        self.server.state.received.append(
            Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        )
        path = self.path.split("?", 1)[0]
        if path == "/hangup":
            return  # the connection closes without any response
        if path == "/truncated":
            self._head(200, 100)
            self.wfile.write(b"0123456789")
            return
        if path == "/slow-body":
            self._head(200, 6)
            self.wfile.write(b"abc")
            self.wfile.flush()
            time.sleep(SLOW_BODY_SECONDS)
            with contextlib.suppress(OSError):  # the client gave up: a test's scenario
                self.wfile.write(b"def")
            return
        status = int(path.rsplit("/", 1)[1]) if path.startswith("/status/") else 200
        self._head(status, 2)
        self.wfile.write(b"ok")

    def _head(self, status: int, length: int) -> None:
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(length))
        self.end_headers()


@pytest.fixture
def server() -> Iterator[HttpServer]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    host, port = httpd.server_address[:2]
    httpd.state = HttpServer(base_url=f"http://{host!s}:{port}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
async def client(telemetry: TelemetryClient, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with instrumented_async_client(telemetry, clock=clock, timeout=5.0) as instrumented:
        yield instrumented


@pytest.fixture
def trace() -> Iterator[TelemetryContext]:
    """A current request context, as the ASGI middleware opens one."""
    context = TelemetryContext(trace_id=new_trace_id(), span_id=new_span_id())
    token = current_context.set(context)
    try:
        yield context
    finally:
        current_context.reset(token)


def refused_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- httpx.AsyncClient ----------------------------------------------------------------


async def test_a_request_is_one_dependency_with_its_fields(
    client: httpx.AsyncClient, server: HttpServer, buffer: ItemBuffer, clock: FakeClock
) -> None:
    url = f"{server.base_url}/api/items/42?q=1&token=abc"
    response = await client.get(url)
    assert response.text == "ok"

    [item] = dependencies(buffer)
    assert item.type == "HTTP"
    assert item.target == server.netloc
    assert item.name == "GET /api/items/42"  # path only: the query is not in the name
    assert item.data == url  # the full URL; the pipeline redacts it off the path
    assert item.result_code == "200"
    assert item.success is True
    assert 0 < item.duration_ms < 5000
    assert item.time == clock.time()
    assert item.context is None
    assert "traceparent" not in server.received[0].headers  # no request context: no trace


@pytest.mark.parametrize(
    ("status", "success"), [(201, True), (399, True), (404, False), (500, False), (503, False)]
)
async def test_status_400_and_above_is_a_failed_dependency(
    client: httpx.AsyncClient, server: HttpServer, buffer: ItemBuffer, status: int, success: bool
) -> None:
    response = await client.post(f"{server.base_url}/status/{status}", json={"a": 1})
    assert response.status_code == status

    [item] = dependencies(buffer)
    assert (item.name, item.result_code, item.success) == (
        f"POST /status/{status}",
        str(status),
        success,
    )


async def test_a_server_hanging_up_records_the_exception_type(
    client: httpx.AsyncClient, server: HttpServer, buffer: ItemBuffer
) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get(f"{server.base_url}/hangup")

    [item] = dependencies(buffer)
    assert (item.name, item.success, item.result_code) == (
        "GET /hangup",
        False,
        "RemoteProtocolError",
    )


async def test_a_body_cut_short_is_a_failed_dependency(
    client: httpx.AsyncClient, server: HttpServer, buffer: ItemBuffer
) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get(f"{server.base_url}/truncated")

    # The status line said 200, but the call failed while reading the body.
    [item] = dependencies(buffer)
    assert (item.success, item.result_code) == (False, "RemoteProtocolError")


async def test_a_refused_connection_records_the_exception_type(
    client: httpx.AsyncClient, buffer: ItemBuffer
) -> None:
    port = refused_port()
    with pytest.raises(httpx.ConnectError):
        await client.get(f"http://127.0.0.1:{port}/ping")

    [item] = dependencies(buffer)
    assert (item.target, item.name, item.success, item.result_code) == (
        f"127.0.0.1:{port}",
        "GET /ping",
        False,
        "ConnectError",
    )


async def test_the_duration_includes_reading_the_body(
    client: httpx.AsyncClient, server: HttpServer, buffer: ItemBuffer
) -> None:
    response = await client.get(f"{server.base_url}/slow-body")
    assert response.text == "abcdef"

    [item] = dependencies(buffer)
    assert item.duration_ms >= SLOW_BODY_SECONDS * 1000 * 0.9
    assert item.success is True


async def test_a_streamed_response_is_recorded_when_it_is_closed(
    client: httpx.AsyncClient, server: HttpServer, buffer: ItemBuffer
) -> None:
    async with client.stream("GET", f"{server.base_url}/slow-body") as response:
        assert response.status_code == 200
        assert dependencies(buffer) == []  # headers are in, the body is not: still running
        assert await response.aread() == b"abcdef"

    [item] = dependencies(buffer)
    assert item.duration_ms >= SLOW_BODY_SECONDS * 1000 * 0.9


async def test_a_call_cancelled_while_reading_is_a_failed_dependency(
    client: httpx.AsyncClient, server: HttpServer, buffer: ItemBuffer
) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.get(f"{server.base_url}/slow-body"), 0.1)

    [item] = dependencies(buffer)
    assert (item.success, item.result_code) == (False, "CancelledError")


async def test_credentials_in_the_url_are_not_recorded(
    client: httpx.AsyncClient, server: HttpServer, buffer: ItemBuffer
) -> None:
    await client.get(f"http://alice:hunter2@{server.netloc}/private")

    [item] = dependencies(buffer)
    assert item.data == f"{server.base_url}/private"
    assert "hunter2" not in repr(item)
    assert server.received[0].headers["authorization"].startswith("Basic ")  # still sent


async def test_a_given_transport_is_wrapped(telemetry: TelemetryClient, buffer: ItemBuffer) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(204)

    async with instrumented_async_client(telemetry, transport=httpx.MockTransport(answer)) as mock:
        await mock.delete("https://api.example.com/v1/things/7")

    [item] = dependencies(buffer)
    assert (item.target, item.name, item.result_code) == (
        "api.example.com",
        "DELETE /v1/things/7",
        "204",
    )


# -- W3C trace context ----------------------------------------------------------------


async def test_traceparent_continues_the_current_trace_with_a_child_span(
    client: httpx.AsyncClient, server: HttpServer, buffer: ItemBuffer, trace: TelemetryContext
) -> None:
    await client.get(f"{server.base_url}/downstream")
    await client.get(f"{server.base_url}/downstream")

    sent = [TRACEPARENT.fullmatch(r.headers["traceparent"]) for r in server.received]
    assert all(sent)
    assert {match.group(1) for match in sent if match} == {trace.trace_id}
    spans = [match.group(2) for match in sent if match]
    assert len(set(spans)) == 2  # a new span per call
    assert trace.span_id not in spans  # a child, not the server span itself

    items = dependencies(buffer)
    assert [item.properties[SPAN_ID_PROPERTY] for item in items] == spans
    assert all(item.context is trace for item in items)  # same operation id
    assert all(item.operation_id == trace.trace_id for item in items)


async def test_a_traceparent_set_by_the_caller_is_kept(
    client: httpx.AsyncClient, server: HttpServer, buffer: ItemBuffer, trace: TelemetryContext
) -> None:
    own = f"00-{new_trace_id()}-{new_span_id()}-00"
    await client.get(f"{server.base_url}/downstream", headers={"TraceParent": own})

    assert server.received[0].headers["traceparent"] == own
    [item] = dependencies(buffer)
    assert SPAN_ID_PROPERTY not in item.properties


def test_the_sync_client_is_instrumented_too(
    telemetry: TelemetryClient, server: HttpServer, buffer: ItemBuffer, trace: TelemetryContext
) -> None:
    with instrumented_client(telemetry, timeout=5.0) as sync_client:
        assert sync_client.get(f"{server.base_url}/sync").text == "ok"
        with pytest.raises(httpx.RemoteProtocolError):
            sync_client.get(f"{server.base_url}/hangup")

    ok, failed = dependencies(buffer)
    assert (ok.name, ok.result_code, ok.success) == ("GET /sync", "200", True)
    assert (failed.result_code, failed.success) == ("RemoteProtocolError", False)
    match = TRACEPARENT.fullmatch(server.received[0].headers["traceparent"])
    assert match is not None
    assert match.group(1) == trace.trace_id


# -- Claude through the real anthropic SDK (httpx2) -------------------------------------


@pytest.fixture
def fake_claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


def claude(
    fake: FakeAnthropic, telemetry: TelemetryClient, retries: int
) -> anthropic.AsyncAnthropic:
    """How the host builds its client: the SDK's options plus our ``http_client``."""
    return anthropic.AsyncAnthropic(
        api_key=fake.api_key,
        base_url=fake.base_url,
        timeout=5.0,
        max_retries=retries,
        http_client=anthropic_http_client(telemetry, timeout=5.0),
    )


async def test_a_claude_call_is_recorded_and_traced(
    fake_claude: FakeAnthropic,
    telemetry: TelemetryClient,
    buffer: ItemBuffer,
    trace: TelemetryContext,
) -> None:
    fake_claude.answer("Bonjour")
    sdk = claude(fake_claude, telemetry, retries=0)
    try:
        message = await sdk.messages.create(
            model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        )
    finally:
        await sdk.close()
    assert message.content[0].type == "text"

    [item] = dependencies(buffer)
    netloc = fake_claude.base_url.removeprefix("http://")
    assert (item.type, item.target, item.name, item.result_code, item.success) == (
        "HTTP",
        netloc,
        "POST /v1/messages",
        "200",
        True,
    )
    assert item.data == f"{fake_claude.base_url}/v1/messages"
    assert fake_claude.api_key not in repr(item)  # headers are never recorded
    match = TRACEPARENT.fullmatch(fake_claude.requests[0].headers["traceparent"])
    assert match is not None
    assert match.group(1) == trace.trace_id
    assert match.group(2) == item.properties[SPAN_ID_PROPERTY]


async def test_each_claude_attempt_is_one_dependency(
    fake_claude: FakeAnthropic, telemetry: TelemetryClient, buffer: ItemBuffer
) -> None:
    fake_claude.fail(529)
    sdk = claude(fake_claude, telemetry, retries=1)
    try:
        with pytest.raises(anthropic.APIStatusError):
            await sdk.messages.create(
                model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
            )
    finally:
        await sdk.close()

    items = dependencies(buffer)
    assert [(item.result_code, item.success) for item in items] == [("529", False)] * 2


async def test_an_unreachable_claude_is_a_failed_dependency(
    telemetry: TelemetryClient, buffer: ItemBuffer
) -> None:
    sdk = anthropic.AsyncAnthropic(
        api_key="sk-test",
        base_url=f"http://127.0.0.1:{refused_port()}",
        max_retries=0,
        http_client=anthropic_http_client(telemetry, timeout=5.0),
    )
    try:
        with pytest.raises(anthropic.APIConnectionError):
            await sdk.messages.create(
                model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
            )
    finally:
        await sdk.close()

    [item] = dependencies(buffer)
    assert (item.success, item.result_code) == (False, "ConnectError")
