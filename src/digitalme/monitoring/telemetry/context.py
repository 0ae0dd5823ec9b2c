"""The per-request telemetry context and W3C trace context (``traceparent``).

The ASGI middleware opens a :class:`TelemetryContext` per request in a
``contextvars`` scope; items captured during the request keep a reference to it
and are enriched from it off the request path. Auth fills in the user once it
has run, so items recorded later in the request carry the user.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


# Trace ids need to be unique, not secret: the Mersenne Twister is ten times
# cheaper than os.urandom on the request path. Zero ids are invalid in W3C.
def new_trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"


@dataclass(slots=True)
class TelemetryContext:
    """What every item of one operation shares. Mutable only by the code that owns the request."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    sampled_flag: bool = True
    request_id: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    path: str | None = None
    method: str | None = None
    user_id: str | None = None
    user_role: str | None = None

    def traceparent(self, span_id: str | None = None) -> str:
        """The header to send downstream (as this span, or a child span when given)."""
        flags = "01" if self.sampled_flag else "00"
        return f"00-{self.trace_id}-{span_id or self.span_id}-{flags}"


def parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """``(trace_id, parent_span_id, sampled)`` from a valid header, else None."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip().lower())
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def context_from_traceparent(header: str | None) -> TelemetryContext:
    """A new server span continuing an incoming trace, or starting a new one."""
    parsed = parse_traceparent(header)
    if parsed is None:
        return TelemetryContext(trace_id=new_trace_id(), span_id=new_span_id())
    trace_id, parent, sampled = parsed
    return TelemetryContext(
        trace_id=trace_id, span_id=new_span_id(), parent_span_id=parent, sampled_flag=sampled
    )


current_context: ContextVar[TelemetryContext | None] = ContextVar("telemetry_context", default=None)


def annotate_request(
    *,
    client_ip: str | None = None,
    user_id: str | int | None = None,
    user_role: str | None = None,
) -> None:
    """Fill in what the host learns during a request (client IP, authenticated user).

    Items already captured in this request share the context object and are
    enriched later, off the path, so they carry these values too. Outside a
    request this does nothing.
    """
    context = current_context.get()
    if context is None:
        return
    if client_ip is not None:
        context.client_ip = client_ip
    if user_id is not None:
        context.user_id = str(user_id)
    if user_role is not None:
        context.user_role = user_role
