"""The per-request telemetry context and W3C trace context (``traceparent``).

The ASGI middleware opens a :class:`TelemetryContext` per request in a
``contextvars`` scope; items captured during the request keep a reference to it
and are enriched from it off the request path. Auth fills in the user once it
has run, so items recorded later in the request carry the user.
"""

from __future__ import annotations

import random
import re
import zlib
from contextvars import ContextVar

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


# Trace ids need to be unique, not secret: the Mersenne Twister is ten times
# cheaper than os.urandom on the request path. Zero ids are invalid in W3C.
def new_trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"


def score(operation_id: str) -> float:
    """A stable position in [0, 100) for an operation id."""
    return (zlib.crc32(operation_id.encode()) % 10_000) / 100.0


class TelemetryContext:
    """What every item of one operation shares. Mutable only by the code that owns the request.

    The trace and span ids are drawn when first read: most requests never need
    them on the request path (items read them off the path, at enrichment).
    """

    __slots__ = (
        "_position",
        "_span_id",
        "_trace_id",
        "client_ip",
        "method",
        "parent_span_id",
        "path",
        "request_id",
        "sampled_flag",
        "user_agent",
        "user_id",
        "user_role",
    )

    def __init__(
        self,
        trace_id: str | None = None,
        span_id: str | None = None,
        parent_span_id: str | None = None,
        sampled_flag: bool = True,
        request_id: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
        path: str | None = None,
        method: str | None = None,
        user_id: str | None = None,
        user_role: str | None = None,
    ) -> None:
        self._trace_id = trace_id
        self._span_id = span_id
        self._position: float | None = None
        self.parent_span_id = parent_span_id
        self.sampled_flag = sampled_flag
        self.request_id = request_id
        self.client_ip = client_ip
        self.user_agent = user_agent
        self.path = path
        self.method = method
        self.user_id = user_id
        self.user_role = user_role

    @property
    def trace_id(self) -> str:
        if self._trace_id is None:
            self._trace_id = new_trace_id()
        return self._trace_id

    @property
    def sampling_position(self) -> float:
        """Where this operation falls in [0, 100) for sampling, the same for all its items.

        A trace continued from a caller hashes its trace id, so every service
        hashing the same id decides alike; a trace started here has a random id,
        so a random position (drawn once, without drawing the id) is as good.
        """
        if self._position is None:
            self._position = (
                random.random() * 100  # noqa: S311 (a position, not a secret)
                if self._trace_id is None
                else score(self._trace_id)
            )
        return self._position

    @property
    def span_id(self) -> str:
        if self._span_id is None:
            self._span_id = new_span_id()
        return self._span_id

    def __repr__(self) -> str:
        return f"TelemetryContext(trace_id={self._trace_id!r}, request_id={self.request_id!r})"

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
        return TelemetryContext()
    trace_id, parent, sampled = parsed
    return TelemetryContext(trace_id=trace_id, parent_span_id=parent, sampled_flag=sampled)


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
