"""The live hub's endpoints: a WebSocket at ``/hubs/metrics`` and SSE at ``/hubs/metrics/events``.

**Authentication** is the admin API's (:data:`~digitalme.monitoring.access.IdentifyCaller`).
Browsers cannot set headers on a WebSocket or an ``EventSource``, so the bearer
token may come in the query string (``?access_token=...``) or, on the
WebSocket, in the first message ``{"type": "auth", "token": "..."}`` within
``hub.auth_timeout`` seconds (5 s). The token becomes an ``Authorization: Bearer`` header
of a copy of the connection's scope, typed ``http``, and ``identify`` gets a
plain :class:`~starlette.requests.Request` over it: the host's callback reads
credentials the way it always does, nothing new to trust. An ``Authorization``
header sent with the handshake (non-browser clients) is used as it is.

**WebSocket.** The handshake is accepted, then: more than ``max_connections``
-> close 1013; no valid token (none in time, or refused) -> 4401; a token
without the admin role -> 4403. An admin gets ``Welcome`` and then the groups'
messages (:mod:`.hub_messages`). Client messages, JSON text of at most 4 KiB:
``{"type": "join" | "leave", "group": name}`` (answered ``Joined`` / ``Left``),
``{"type": "ping"}`` (answered ``Pong``); ``auth`` again is ignored. Anything
else gets ``Error`` and a close: 1003 for binary or non-JSON data, 1008 for a
message too large, of an unknown type or naming an unknown group.

**SSE.** ``GET /hubs/metrics/events`` (``Authorization`` header or
``access_token``; ``?groups=health,alerts``, every group when absent): 401 /
403 as the admin API, 422 for an unknown group, 503 beyond ``max_connections``;
then ``event: <type>`` / ``data: <json>`` for the same messages, and a last
``event: Close`` (``code``, ``reason``) when the hub ends the stream.

Each connection sends from its own task; a connection the hub closes (stop,
stalled) is cut within ``CLOSE_TIMEOUT`` even when its peer does not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from digitalme.monitoring.access import Access, IdentifyCaller, error_response, refusal
from digitalme.monitoring.dashboard import hub_messages as messages
from digitalme.monitoring.dashboard.hub import (
    POLICY_VIOLATION,
    TRY_AGAIN_LATER,
    Hub,
    HubClient,
    HubFull,
)
from digitalme.monitoring.dashboard.hub_messages import Group, Message
from digitalme.monitoring.named_route import NamedRoute

__all__ = [
    "EVENTS_PATH",
    "HUB_PATH",
    "MAX_MESSAGE_BYTES",
    "EventStream",
    "hub_routes",
    "token_request",
]

log = structlog.get_logger("digitalme.monitoring.hub")

HUB_PATH = "/hubs/metrics"
EVENTS_PATH = "/hubs/metrics/events"
MAX_MESSAGE_BYTES = 4096
CLOSE_TIMEOUT = 2.0  # seconds to close a connection, read or not
UNSUPPORTED_DATA = 1003
INTERNAL_ERROR = 1011
UNAUTHENTICATED = 4401
FORBIDDEN = 4403
_TRANSPORT_ERRORS = (WebSocketDisconnect, OSError, RuntimeError)


def token_request(scope: Scope, token: str | None) -> Request:
    """An ``http`` request over ``scope`` carrying ``token`` as a bearer (for ``identify``)."""
    headers = list(scope.get("headers", ()))
    if token is not None:
        try:
            value = f"Bearer {token.strip()}".encode("latin-1")
        except UnicodeEncodeError:  # no header can carry it: no credentials
            value = b""
        headers = [(k, v) for k, v in headers if k.lower() != b"authorization"]
        if value:
            headers.append((b"authorization", value))
    return Request({**scope, "type": "http", "method": "GET", "headers": headers})


@dataclass(frozen=True, slots=True)
class Problem:
    """A client message the hub refuses: the ``Error`` text and the close code."""

    code: int
    message: str


def parse(raw: Mapping[str, Any]) -> dict[str, Any] | Problem:
    """A client's JSON object (with a string ``type``) or the problem with it."""
    text = raw.get("text")
    if not isinstance(text, str):
        return Problem(UNSUPPORTED_DATA, "binary messages are not supported")
    if len(text) > MAX_MESSAGE_BYTES or len(text.encode()) > MAX_MESSAGE_BYTES:
        return Problem(POLICY_VIOLATION, f"a message may hold {MAX_MESSAGE_BYTES} bytes")
    try:
        data = json.loads(text)
    except ValueError:
        return Problem(UNSUPPORTED_DATA, "messages are JSON")
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return Problem(POLICY_VIOLATION, 'a message is a JSON object with a "type"')
    return data


def _group(data: Mapping[str, Any]) -> Group | Problem:
    name = data.get("group")
    try:
        if not isinstance(name, str):
            raise ValueError(name)
        return Group(name)
    except ValueError:
        names = ", ".join(g.value for g in Group)
        return Problem(POLICY_VIOLATION, f"unknown group; groups are {names}")


def handle_message(client: HubClient, data: Mapping[str, Any]) -> Problem | None:
    """Apply one client message (joins, leaves, pings); a problem for anything else."""
    kind = data["type"]
    if kind in ("join", "leave"):
        group = _group(data)
        if isinstance(group, Problem):
            return group
        if kind == "join":
            client.join(group)
            answer = "Joined"
        else:
            client.leave(group)
            answer = "Left"
        names = messages.group_names(client.groups)
        client.offer({"type": answer, "group": str(group), "groups": names})
        return None
    if kind == "ping":
        client.offer({"type": "Pong"})
        return None
    if kind == "auth":
        return None
    return Problem(POLICY_VIOLATION, f"unknown message type {kind[:40]!r}")


async def _finish(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _bounded(step: Awaitable[Any]) -> None:
    with contextlib.suppress(TimeoutError, *_TRANSPORT_ERRORS):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await step


class HubSocket:
    """One WebSocket connection of the hub."""

    def __init__(self, hub: Hub, identify: IdentifyCaller, websocket: WebSocket) -> None:
        self.hub = hub
        self.identify = identify
        self.websocket = websocket

    async def close(self, code: int, reason: str = "") -> None:
        await _bounded(self.websocket.close(code, reason))

    async def refuse(self, problem: Problem) -> None:
        await _bounded(self.websocket.send_text(json.dumps(messages.error(problem.message))))
        await self.close(problem.code, problem.message[:100])

    async def token(self) -> str | Problem | None:
        """The token of the query or of the first message (None: none came in time)."""
        websocket = self.websocket
        token = websocket.query_params.get("access_token")
        if token is not None or "authorization" in websocket.headers:
            return token
        try:
            async with asyncio.timeout(self.hub.auth_timeout):
                raw = await websocket.receive()
        except TimeoutError:
            return None
        if raw["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(raw.get("code", 1000))
        data = parse(raw)
        if isinstance(data, Problem):
            return data
        first = data.get("token")
        if data["type"] != "auth" or not isinstance(first, str):
            return None
        return first

    async def serve(self, client: HubClient) -> None:
        token = await self.token()
        if isinstance(token, Problem):
            await self.refuse(token)
            return
        if token is None and "authorization" not in self.websocket.headers:
            await self.close(UNAUTHENTICATED, "authentication required")
            return
        caller = await self.identify(token_request(self.websocket.scope, token))
        if caller.access is Access.ANONYMOUS:
            await self.close(UNAUTHENTICATED, "authentication required")
            return
        if caller.access is Access.FORBIDDEN:
            await self.close(FORBIDDEN, "the live hub needs the Admin or SuperAdmin role")
            return
        self.hub.admit(client)
        await self.pump(client)

    async def pump(self, client: HubClient) -> None:
        sender = asyncio.create_task(self._send(client), name=f"hub-send-{client.ident}")
        receiver = asyncio.create_task(self._receive(client), name=f"hub-recv-{client.ident}")
        closed = asyncio.create_task(client.closed.wait())
        done, _ = await asyncio.wait(
            {sender, receiver, closed}, return_when=asyncio.FIRST_COMPLETED
        )
        await _finish([sender, receiver, closed])
        if receiver in done and not receiver.cancelled():
            problem = receiver.result() if receiver.exception() is None else None
            if problem is not None:
                await self.refuse(problem)
                return
        if client.closed.is_set():
            await self.close(client.close_code or POLICY_VIOLATION, client.close_reason)

    async def _send(self, client: HubClient) -> None:
        with contextlib.suppress(*_TRANSPORT_ERRORS):
            while (message := await client.next()) is not None:
                await self.websocket.send_text(json.dumps(message))

    async def _receive(self, client: HubClient) -> Problem | None:
        while True:
            try:
                raw = await self.websocket.receive()
            except _TRANSPORT_ERRORS:
                return None
            if raw["type"] == "websocket.disconnect":
                return None
            data = parse(raw)
            if isinstance(data, Problem):
                return data
            problem = handle_message(client, data)
            if problem is not None:
                return problem


def _sse(message: Message) -> bytes:
    return f"event: {message['type']}\ndata: {json.dumps(message)}\n\n".encode()


class EventStream(Response):
    """The SSE stream of one hub client (an ASGI response; not a buffered body)."""

    def __init__(self, hub: Hub, client: HubClient) -> None:
        self.hub = hub
        self.client = client
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = self.client
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            sender = asyncio.create_task(self._send(send), name=f"hub-sse-{client.ident}")
            gone = asyncio.create_task(self._disconnected(receive))
            closed = asyncio.create_task(client.closed.wait())
            done, _ = await asyncio.wait(
                {sender, gone, closed}, return_when=asyncio.FIRST_COMPLETED
            )
            await _finish([sender, gone, closed])
            if gone not in done:
                if client.closed.is_set():
                    notice = {
                        "type": "Close",
                        "code": client.close_code,
                        "reason": client.close_reason,
                    }
                    await _bounded(
                        send(
                            {"type": "http.response.body", "body": _sse(notice), "more_body": True}
                        )
                    )
                await _bounded(
                    send({"type": "http.response.body", "body": b"", "more_body": False})
                )
        finally:
            self.hub.disconnect(client)

    async def _send(self, send: Send) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            while (message := await self.client.next()) is not None:
                await send({"type": "http.response.body", "body": _sse(message), "more_body": True})

    @staticmethod
    async def _disconnected(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass


def _groups(raw: str | None) -> list[Group] | str:
    if not raw:
        return []
    groups: list[Group] = []
    for name in (part.strip() for part in raw.split(",")):
        if not name:
            continue
        try:
            groups.append(Group(name))
        except ValueError:
            return name
    return groups


def hub_routes(hub: Hub, identify: IdentifyCaller, *, strict: bool) -> list[BaseRoute]:
    """The WebSocket and SSE routes of ``hub``."""

    async def websocket_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            client = hub.connect()
        except HubFull:
            await _bounded(websocket.close(TRY_AGAIN_LATER, "too many clients"))
            return
        connection = HubSocket(hub, identify, websocket)
        try:
            await connection.serve(client)
        except WebSocketDisconnect:
            pass
        except Exception:
            if strict:
                raise
            log.exception("hub_websocket_failed")
            await connection.close(INTERNAL_ERROR, "internal error")
        finally:
            hub.disconnect(client)

    async def events_endpoint(request: Request) -> Response:
        token = request.query_params.get("access_token")
        asked = request if token is None else token_request(request.scope, token)
        refused = refusal(request, await identify(asked))
        if refused is not None:
            return refused
        groups = _groups(request.query_params.get("groups"))
        if isinstance(groups, str):
            names = ", ".join(g.value for g in Group)
            return error_response(
                request, 422, "invalid_input", f"unknown group {groups[:40]!r}; groups are {names}"
            )
        try:
            client = hub.connect(groups)
        except HubFull as exc:
            return error_response(
                request, 503, "too_many_clients", str(exc), headers={"Retry-After": "5"}
            )
        hub.admit(client)
        return EventStream(hub, client)

    return [
        WebSocketRoute(HUB_PATH, websocket_endpoint),
        NamedRoute(EVENTS_PATH, events_endpoint, methods=["GET"], include_in_schema=False),
    ]
