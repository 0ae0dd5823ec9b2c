"""The security guard: client IP, rate limit, threat detection and body size, before any handler.

Pure ASGI, in this order for each HTTP request, each step refusing with the one
JSON error shape and a security event, so that the handler never runs for a
refused request:

1. the client IP (trusted proxies only), stored in ``scope["state"]["client_ip"]``
   for handlers and telemetry;
2. the rate limit -> 429 ``rate_limited`` with ``Retry-After`` (requests to the
   ``health_paths`` count against their own per-IP budget instead, see
   :meth:`RateLimiter.check_health`);
3. signatures in the path and query -> 400 ``threat_detected``;
4. the body size, first from ``Content-Length`` without reading, then counted
   while reading -> 413 ``payload_too_large``;
5. signatures in a JSON body -> 400 ``threat_detected``;

then the buffered body is replayed to the application. Error messages name the
threat category and never echo the request. The cheap case stays cheap: a GET
without a query costs one regex search over the path and, with rate limiting on,
one storage hit.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitalme.host.errors import send_error
from digitalme.host.guard.client_ip import client_ip, parse_trusted
from digitalme.host.guard.rate_limit import RateLimiter
from digitalme.host.guard.threats import (
    DEFAULT_UNSCANNED_FIELDS,
    ThreatType,
    is_json_content_type,
    scan_json_body,
    scan_path,
    scan_query,
)
from digitalme.host.security_events import SecurityEvent, SecurityEvents, SecurityEventType
from digitalme.monitoring.telemetry.context import annotate_request
from digitalme.settings import SecuritySettings

__all__ = ["Identify", "SecurityGuardMiddleware"]

Identify = Callable[[Scope], str | None]
"""Returns a stable identity (``user:42``, ``key:abcd1234``) when the request carries
credentials, else None. Called before authentication, so it must be cheap and must
not raise; the guard only uses it to pick a rate-limit budget."""

# Methods that carry no body unless the request says otherwise in its headers.
_BODYLESS_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class SecurityGuardMiddleware:
    """Refuses abusive, hostile or oversized requests before the application sees them.

    ``settings.rate_limit_enabled`` and ``settings.threat_detection_enabled``
    switch the two checks; the body size limit always applies. The caller owns
    ``rate_limiter`` (built from the settings, in memory, when not given) and
    closes it; with a Redis-backed one the limit is shared by every instance.
    ``unscanned_fields`` are JSON keys whose values are not scanned (passwords).
    ``health_paths`` (``/health``, ...) are rate limited by their own budget.
    Lifespan and other scopes pass through; a WebSocket gets its client IP in
    ``scope["state"]`` and nothing else.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: SecuritySettings,
        events: SecurityEvents,
        identify: Identify,
        rate_limiter: RateLimiter | None = None,
        unscanned_fields: frozenset[str] = DEFAULT_UNSCANNED_FIELDS,
        health_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.rate_limiter = rate_limiter or RateLimiter.from_settings(settings)
        self._events = events
        self._identify = identify
        self._trusted = parse_trusted(settings.trusted_proxies)
        self._rate_limit = settings.rate_limit_enabled
        self._detect = settings.threat_detection_enabled
        self._body_limit = settings.body_size_limit
        self._unscanned = frozenset(field.lower() for field in unscanned_fields)
        self._health_paths = frozenset(health_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            self._remember_client_ip(scope)
            await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _remember_client_ip(self, scope: Scope) -> str:
        ip = client_ip(scope, self._trusted)
        state = scope.get("state")
        if state is None:
            scope["state"] = state = {}
        state["client_ip"] = ip
        annotate_request(client_ip=ip)
        return ip

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        ip = self._remember_client_ip(scope)
        path: str = scope["path"]

        if self._rate_limit:
            identity: str | None
            if path in self._health_paths:
                identity = None
                decision = await self.rate_limiter.check_health(ip)
            else:
                identity = self._identify(scope)
                decision = await self.rate_limiter.check(ip, identity)
            if not decision.allowed:
                self._emit(
                    SecurityEventType.RATE_LIMIT,
                    f"{decision.scope} rate limit exceeded ({decision.limit})",
                    scope,
                    ip,
                    identity,
                )
                await send_error(
                    send,
                    429,
                    "rate_limited",
                    f"too many requests; retry after {decision.retry_after} s",
                    {"Retry-After": str(decision.retry_after)},
                )
                return

        if self._detect:
            if (threat := scan_path(path)) is not None:
                await self._refuse_threat(threat, "path", scope, ip, send)
                return
            query: bytes = scope.get("query_string", b"")
            if query and (threat := scan_query(query)) is not None:
                await self._refuse_threat(threat, "query", scope, ip, send)
                return

        content_length: int | None = None
        content_type = b""
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                # A malformed length is left to the server; the body is still counted.
                content_length = int(value) if value.isdigit() else None
            elif name == b"content-type":
                content_type = value
            elif name == b"transfer-encoding":
                chunked = True

        if content_length is not None and content_length > self._body_limit:
            await self._refuse_too_large(scope, ip, send)
            return
        if scope["method"] in _BODYLESS_METHODS and not content_length and not chunked:
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; there is nobody to answer
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self._body_limit:
                await self._refuse_too_large(scope, ip, send)
                return
            chunks.append(chunk)
            more_body = message.get("more_body", False)
        body = b"".join(chunks)

        if (
            self._detect
            and body
            and is_json_content_type(content_type)
            and (threat := scan_json_body(body, self._unscanned)) is not None
        ):
            await self._refuse_threat(threat, "body", scope, ip, send)
            return

        await self.app(scope, _replaying(body, receive), send)

    async def _refuse_threat(
        self, threat: ThreatType, where: str, scope: Scope, ip: str, send: Send
    ) -> None:
        # A hostile path is itself the payload, so it stays out of the event too.
        self._emit(
            threat.event_type,
            f"{threat} detected in the request {where}",
            scope,
            ip,
            self._identify(scope),
            include_path=where != "path",
            location=where,
        )
        await send_error(send, 400, "threat_detected", f"request refused: {threat} detected")

    async def _refuse_too_large(self, scope: Scope, ip: str, send: Send) -> None:
        self._emit(
            SecurityEventType.PAYLOAD_TOO_LARGE,
            f"request body larger than {self._body_limit} bytes",
            scope,
            ip,
            self._identify(scope),
        )
        await send_error(
            send,
            413,
            "payload_too_large",
            f"request body exceeds the limit of {self._body_limit} bytes",
        )

    def _emit(
        self,
        event_type: SecurityEventType,
        details: str,
        scope: Scope,
        ip: str,
        identity: str | None,
        *,
        include_path: bool = True,
        location: str | None = None,
    ) -> None:
        properties = {"method": scope["method"]}
        if identity is not None:
            properties["identity"] = identity
        if location is not None:
            properties["location"] = location
        self._events.emit(
            SecurityEvent(
                type=event_type,
                details=details,
                client_ip=ip,
                user_id=_user_id(identity),
                path=scope["path"] if include_path else None,
                properties=properties,
            )
        )


def _user_id(identity: str | None) -> int | None:
    """The numeric user id of a ``user:42`` identity; None for API keys and anonymous."""
    if identity is None:
        return None
    kind, _, value = identity.partition(":")
    return int(value) if kind == "user" and value.isascii() and value.isdigit() else None


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that delivers the buffered body once, then defers to the server's.

    Deferring matters: after the body, the next message is ``http.disconnect``,
    which streaming responses and long handlers wait on to notice a client leaving.
    """
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
