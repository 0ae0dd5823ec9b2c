"""Posting to HTTP receivers (Slack, Twilio, webhooks) with one failure policy.

- a transport error or no complete answer within the channel's timeout: not
  permanent;
- 5xx, 408 and 429: not permanent, with ``retry_after`` from ``Retry-After``
  (seconds or an HTTP date) when the receiver sent one;
- any other status outside 2xx (4xx, and 3xx since redirects are not followed):
  permanent, the request itself is wrong and sending it again cannot help.

**Why the transport is called directly, not through ``httpx.AsyncClient``.**
The client logs every request at INFO as ``HTTP Request: POST <url>``, and a
Slack or webhook URL is a secret (its path or query is the credential). Calling
the connection pool's transport directly keeps the pooling, TLS and timeouts and
skips that log line; the transport logs at DEBUG only the host and method.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.notifiers.errors import DeliveryError
from digitalme.monitoring.notifiers.masking import SecretMask

__all__ = [
    "MAX_RETRY_AFTER",
    "HttpAnswer",
    "HttpPoster",
    "first_line",
    "parse_retry_after",
]

USER_AGENT = "DigitalMe-Alerts/1"
MAX_RESPONSE_BYTES = 64 * 1024  # receipts and error reasons need a few bytes of it
MAX_RETRY_AFTER = 3600.0  # a receiver asking for more is taken to mean "an hour"
_RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})
_MAX_FIRST_LINE = 120


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A receiver's answer: status, headers and (at most 64 KiB of) body."""

    status: int
    headers: httpx.Headers
    body: bytes


ErrorDescriber = Callable[[HttpAnswer], str | None]
"""Turns a failed answer into a short, secret-free detail (``invalid_payload``)."""


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    None when absent or unreadable; a date in the past is 0; at most
    :data:`MAX_RETRY_AFTER`.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.utcoffset() is None:  # "-0000" dates parse naive; HTTP dates are GMT
            return None
        seconds = (moment - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def first_line(answer: HttpAnswer) -> str | None:
    """The first line of a text answer (Slack's ``invalid_payload``), cut short."""
    text = answer.body.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    line = text.splitlines()[0].strip()
    return line[:_MAX_FIRST_LINE]


class HttpPoster:
    """POSTs for one channel over a pooled connection, mapping failures to DeliveryError."""

    def __init__(
        self,
        channel: str,
        *,
        timeout: float,
        mask: SecretMask,
        clock: Clock,
        describe_error: ErrorDescriber = first_line,
    ) -> None:
        self._channel = channel
        self._timeout = timeout
        self._mask = mask
        self._clock = clock
        self._describe_error = describe_error
        self._transport: httpx.AsyncHTTPTransport | None = None

    async def post(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """POST ``content``; the 2xx answer, or :class:`DeliveryError`."""
        if self._transport is None:
            # Created on first use (and again after aclose), inside the running loop.
            self._transport = httpx.AsyncHTTPTransport(retries=0)
        request = httpx.Request(
            "POST",
            url,
            content=content,
            headers={"user-agent": USER_AGENT, **headers},
            extensions={"timeout": httpx.Timeout(self._timeout).as_dict()},
        )
        try:
            # The per-phase timeouts above do not bound a receiver that trickles
            # bytes; this deadline bounds the whole exchange.
            async with asyncio.timeout(self._timeout):
                answer = await self._exchange(self._transport, request)
        except (TimeoutError, httpx.TimeoutException):
            raise DeliveryError(
                self._channel, f"no answer within {self._timeout:g} s", permanent=False
            ) from None
        except httpx.TransportError as exc:
            # "from None": the httpx error holds the request, hence the URL.
            reason = self._mask(f"network error: {type(exc).__name__}: {exc}")
            raise DeliveryError(self._channel, reason, permanent=False) from None
        if 200 <= answer.status < 300:
            return answer
        raise self._failure(answer)

    async def _exchange(
        self, transport: httpx.AsyncHTTPTransport, request: httpx.Request
    ) -> HttpAnswer:
        response = await transport.handle_async_request(request)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= MAX_RESPONSE_BYTES:
                    break
        finally:
            await response.aclose()
        return HttpAnswer(response.status_code, response.headers, bytes(body[:MAX_RESPONSE_BYTES]))

    def _failure(self, answer: HttpAnswer) -> DeliveryError:
        status = answer.status
        detail = self._describe_error(answer)
        reason = f"HTTP {status}" + (f": {detail}" if detail else "")
        if status >= 500 or status in _RETRYABLE_CLIENT_ERRORS:
            retry_after = parse_retry_after(answer.headers.get("retry-after"), self._clock.now())
            return DeliveryError(
                self._channel,
                self._mask(reason),
                permanent=False,
                retry_after=retry_after,
                status=status,
            )
        if 300 <= status < 400:
            reason += " (redirects are not followed)"
        return DeliveryError(self._channel, self._mask(reason), permanent=True, status=status)

    async def aclose(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.aclose()
