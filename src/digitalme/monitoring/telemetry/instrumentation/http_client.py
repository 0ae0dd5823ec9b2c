"""Outgoing HTTP calls as dependencies, with W3C trace context propagated downstream.

Every request sent through an instrumented ``httpx`` client (and, for the
Anthropic SDK, an ``httpx2`` client) is recorded as one ``HTTP`` dependency:
target ``host[:port]``, name ``METHOD /path`` (no query), data the full URL (the
pipeline redacts it off the path; credentials in the URL are dropped here),
the duration, success (no transport error and status < 400) and the result
code (the status, or the exception's type name). When a request context is
current, a ``traceparent`` header continues its trace with a new child span,
unless the caller set one.

**Why a transport wrapper, not event hooks.** httpx's ``event_hooks`` see a
request and, after the headers, its response; they never see a connect error,
a timeout or a hang-up, and the response hook fires before the body is read.
A transport wrapper sits around the real send: it sees every failure, and by
wrapping the response's byte stream it stops the clock when the body has been
read and closed, so durations are real and a body cut short counts as failed.
It is also the one extension point both httpx and httpx2 honour for a client
they did not build (the Anthropic SDK rejects plain httpx objects), and it
changes no global state: only clients built with it are instrumented.

Each retry of an SDK and each redirect hop passes through the transport, so
each is one dependency, as Application Insights records them.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Protocol

import httpx
import httpx2

from digitalme.monitoring.clock import Clock, SystemClock
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.context import current_context, new_span_id

__all__ = [
    "DEPENDENCY_TYPE",
    "InstrumentedAsyncHttpx2Transport",
    "InstrumentedAsyncTransport",
    "InstrumentedTransport",
    "anthropic_http_client",
    "instrumented_async_client",
    "instrumented_client",
]

DEPENDENCY_TYPE = "HTTP"
TRACEPARENT = "traceparent"
SPAN_ID_PROPERTY = "SpanId"
"""The dependency's own span id: the ``parent`` a downstream service sees in ``traceparent``."""

# Client options that configure the connection pool; with an explicit transport
# httpx ignores them on the client (and warns about some), so they go to the
# inner transport instead.
_TRANSPORT_OPTIONS = ("verify", "cert", "http1", "http2", "limits")


class _Request(Protocol):
    """What httpx and httpx2 requests share and the recorder reads."""

    @property
    def method(self) -> str: ...
    @property
    def url(self) -> httpx.URL | httpx2.URL: ...
    @property
    def headers(self) -> httpx.Headers | httpx2.Headers: ...


class _Exchange:
    """One request on its way: started here, finished once (response closed or error)."""

    __slots__ = ("_done", "_request", "_span_id", "_started", "_started_at", "_telemetry", "status")

    def __init__(
        self, telemetry: TelemetryClient, clock: Clock, request: _Request, span_id: str | None
    ) -> None:
        self._telemetry = telemetry
        self._request = request
        self._span_id = span_id
        self._done = False
        self.status: int | None = None
        self._started_at = clock.time()
        self._started = time.perf_counter()

    def received(self, status: int, closed: bool) -> bool:
        """The response's headers arrived; True when its body is still to be read."""
        self.status = status
        if closed:  # a body already read (e.g. a mock transport): nothing left to time
            self.finish(None)
            return False
        return True

    def finish(self, error: BaseException | None) -> None:
        """Record the dependency (only the first call counts)."""
        if self._done:
            return
        self._done = True
        duration = time.perf_counter() - self._started
        try:
            status = self.status
            if error is not None:
                success, result_code = False, type(error).__name__
            elif status is not None:
                success, result_code = status < 400, str(status)
            else:  # closed without a status: cannot happen, but never guess success
                success, result_code = False, ""
            request = self._request
            url = request.url
            # Credentials in the URL are no business of telemetry; the rest of it
            # (query included) is redacted by the pipeline, off the request path.
            data = str(url.copy_with(userinfo=b"") if url.userinfo else url)
            self._telemetry.track_dependency(
                DEPENDENCY_TYPE,
                f"{request.method} {url.path}",
                data,
                self._started_at,
                duration,
                success,
                target=url.netloc.decode("ascii", "replace"),
                result_code=result_code,
                properties=None if self._span_id is None else {SPAN_ID_PROPERTY: self._span_id},
            )
        except Exception:
            self._telemetry.report_internal_error("http_client")


class _Recorder:
    """Starts exchanges: propagates the trace context and starts the clock."""

    __slots__ = ("_clock", "_telemetry")

    def __init__(self, telemetry: TelemetryClient, clock: Clock | None) -> None:
        self._telemetry = telemetry
        self._clock = clock or SystemClock()

    def begin(self, request: _Request) -> _Exchange:
        span_id: str | None = None
        context = current_context.get()
        headers = request.headers
        # A caller that set its own traceparent knows its trace better than we do.
        if context is not None and TRACEPARENT not in headers:
            span_id = new_span_id()
            headers[TRACEPARENT] = context.traceparent(span_id)
        return _Exchange(self._telemetry, self._clock, request, span_id)


# -- response bodies: the clock stops when the body is closed -------------------


class _AsyncBody(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None: ...


class _SyncBody(Protocol):
    def __iter__(self) -> Iterator[bytes]: ...
    def close(self) -> None: ...


class _RecordingAsyncBody:
    """Passes the body through; finishes the exchange on close or on a read error."""

    def __init__(self, body: _AsyncBody, exchange: _Exchange) -> None:
        self._body = body
        self._exchange = exchange

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._body:
                yield chunk
        # Not BaseException: GeneratorExit only means the reader stopped early,
        # which is its choice, not a failed call. Cancellation is a failed call.
        except (Exception, asyncio.CancelledError) as exc:
            self._exchange.finish(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self._body.aclose()
        except (Exception, asyncio.CancelledError) as exc:
            self._exchange.finish(exc)
            raise
        self._exchange.finish(None)


class _RecordingSyncBody:
    """The sync twin of :class:`_RecordingAsyncBody`."""

    def __init__(self, body: _SyncBody, exchange: _Exchange) -> None:
        self._body = body
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except Exception as exc:
            self._exchange.finish(exc)
            raise

    def close(self) -> None:
        try:
            self._body.close()
        except Exception as exc:
            self._exchange.finish(exc)
            raise
        self._exchange.finish(None)


# httpx checks that a transport's response stream is *its* byte stream class,
# and httpx2 checks for its own, hence one thin subclass per package.
class _HttpxAsyncBody(_RecordingAsyncBody, httpx.AsyncByteStream):
    pass


class _HttpxSyncBody(_RecordingSyncBody, httpx.SyncByteStream):
    pass


class _Httpx2AsyncBody(_RecordingAsyncBody, httpx2.AsyncByteStream):
    pass


# -- transports -------------------------------------------------------------------


class InstrumentedAsyncTransport(httpx.AsyncBaseTransport):
    """Wraps an ``httpx.AsyncBaseTransport``; records each request it sends as a dependency."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        telemetry: TelemetryClient,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.transport = transport
        self._recorder = _Recorder(telemetry, clock)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = self._recorder.begin(request)
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException as exc:  # cancellation included: the call did not complete
            exchange.finish(exc)
            raise
        stream = response.stream
        if exchange.received(response.status_code, response.is_closed):
            if isinstance(stream, httpx.AsyncByteStream):
                response.stream = _HttpxAsyncBody(stream, exchange)
            else:  # httpx refuses such a response anyway; record what we know
                exchange.finish(None)
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()


class InstrumentedTransport(httpx.BaseTransport):
    """Wraps an ``httpx.BaseTransport``, for ``httpx.Client``.

    See :class:`InstrumentedAsyncTransport`.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport,
        telemetry: TelemetryClient,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.transport = transport
        self._recorder = _Recorder(telemetry, clock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        exchange = self._recorder.begin(request)
        try:
            response = self.transport.handle_request(request)
        except BaseException as exc:
            exchange.finish(exc)
            raise
        stream = response.stream
        if exchange.received(response.status_code, response.is_closed):
            if isinstance(stream, httpx.SyncByteStream):
                response.stream = _HttpxSyncBody(stream, exchange)
            else:
                exchange.finish(None)
        return response

    def close(self) -> None:
        self.transport.close()


class InstrumentedAsyncHttpx2Transport(httpx2.AsyncBaseTransport):
    """Wraps an ``httpx2.AsyncBaseTransport``: the Anthropic SDK's HTTP package."""

    def __init__(
        self,
        transport: httpx2.AsyncBaseTransport,
        telemetry: TelemetryClient,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.transport = transport
        self._recorder = _Recorder(telemetry, clock)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        exchange = self._recorder.begin(request)
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException as exc:
            exchange.finish(exc)
            raise
        stream = response.stream
        if exchange.received(response.status_code, response.is_closed):
            if isinstance(stream, httpx2.AsyncByteStream):
                response.stream = _Httpx2AsyncBody(stream, exchange)
            else:
                exchange.finish(None)
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()


# -- clients ------------------------------------------------------------------------


def _split_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the connection-pool options out of client kwargs, for the inner transport."""
    options = {name: kwargs.pop(name) for name in _TRANSPORT_OPTIONS if name in kwargs}
    if "trust_env" in kwargs:  # the client reads it too (netrc), so it stays there as well
        options["trust_env"] = kwargs["trust_env"]
    if "proxy" in kwargs:
        options["proxy"] = kwargs.pop("proxy")
    return options


def instrumented_async_client(
    telemetry: TelemetryClient, *, clock: Clock | None = None, **kwargs: Any
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every request is recorded as a dependency.

    ``kwargs`` are ``httpx.AsyncClient``'s. A given ``transport`` and every
    ``mounts`` transport are wrapped; without one, an ``httpx.AsyncHTTPTransport``
    is built from the pool options (``verify``, ``cert``, ``http1``, ``http2``,
    ``limits``, ``trust_env``, ``proxy``). Proxies come from ``proxy`` only, never
    from the environment: the settings tree is the one source of configuration.
    """
    inner = kwargs.pop("transport", None)
    options = _split_options(kwargs)
    if inner is None:
        inner = httpx.AsyncHTTPTransport(**options)

    def wrap(transport: httpx.AsyncBaseTransport) -> InstrumentedAsyncTransport:
        return InstrumentedAsyncTransport(transport, telemetry, clock=clock)

    kwargs["transport"] = wrap(inner)
    mounts: Mapping[str, httpx.AsyncBaseTransport | None] | None = kwargs.get("mounts")
    if mounts:
        kwargs["mounts"] = {k: None if v is None else wrap(v) for k, v in mounts.items()}
    return httpx.AsyncClient(**kwargs)


def instrumented_client(
    telemetry: TelemetryClient, *, clock: Clock | None = None, **kwargs: Any
) -> httpx.Client:
    """An ``httpx.Client`` whose every request is recorded.

    See :func:`instrumented_async_client`.
    """
    inner = kwargs.pop("transport", None)
    options = _split_options(kwargs)
    if inner is None:
        inner = httpx.HTTPTransport(**options)

    def wrap(transport: httpx.BaseTransport) -> InstrumentedTransport:
        return InstrumentedTransport(transport, telemetry, clock=clock)

    kwargs["transport"] = wrap(inner)
    mounts: Mapping[str, httpx.BaseTransport | None] | None = kwargs.get("mounts")
    if mounts:
        kwargs["mounts"] = {k: None if v is None else wrap(v) for k, v in mounts.items()}
    return httpx.Client(**kwargs)


def _keepalive_socket_options() -> list[tuple[int, int, int]]:
    """The TCP keep-alive the Anthropic SDK sets on its own transport.

    A generation can take minutes with no byte on the wire; without keep-alive
    probes, NATs and load balancers drop such idle connections silently. The SDK
    only sets these when it builds the transport, so we set them on ours.
    """
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPINTVL", 60), ("TCP_KEEPCNT", 5), ("TCP_KEEPIDLE", 60)):
        option = getattr(socket, name, None)
        if option is not None:
            options.append((socket.IPPROTO_TCP, option, value))
    return options


def anthropic_http_client(
    telemetry: TelemetryClient,
    *,
    timeout: float | httpx2.Timeout | None = None,
    clock: Clock | None = None,
) -> httpx2.AsyncClient:
    """The ``http_client`` to give ``anthropic.AsyncAnthropic`` so that Claude calls are recorded.

    The SDK (2.x) speaks ``httpx2`` and refuses ``httpx`` objects, so this is the
    SDK's own ``DefaultAsyncHttpxClient`` (its default timeout, connection limits
    and redirect policy) around an instrumented ``httpx2`` transport that keeps
    the SDK's TCP keep-alive. ``timeout`` (seconds or ``httpx2.Timeout``) defaults
    to the SDK's; ``AsyncAnthropic(timeout=...)`` still applies per request.

    Passing a transport turns off the SDK's proxies from the environment, in line
    with the settings tree being the only configuration (as for ``base_url``).
    """
    import anthropic  # the SDK takes seconds to import: only hosts that call Claude pay

    transport = InstrumentedAsyncHttpx2Transport(
        httpx2.AsyncHTTPTransport(
            limits=anthropic.DEFAULT_CONNECTION_LIMITS,
            socket_options=_keepalive_socket_options(),
        ),
        telemetry,
        clock=clock,
    )
    options: dict[str, Any] = {"transport": transport}
    if timeout is not None:
        options["timeout"] = timeout
    return anthropic.DefaultAsyncHttpxClient(**options)
