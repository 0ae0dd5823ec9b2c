"""Per-request context shared by the host's modules."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="")


def current_request_id() -> str:
    """The current request's id, or an empty string outside a request."""
    return request_id_var.get()
