"""Routes of the monitoring layer that telemetry can name."""

from __future__ import annotations

from starlette.routing import Match, Route
from starlette.types import Scope

__all__ = ["NamedRoute"]


class NamedRoute(Route):
    """A Starlette route that puts itself in ``scope["route"]`` when it matches.

    Starlette's router does so for every route, FastAPI's only for its own
    ``APIRoute``: the monitoring layer's plain routes (health, ``/metrics``, the
    admin API) mounted on a FastAPI app would otherwise be recorded as
    ``<unmatched>``, mixed with requests for unknown paths.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope
