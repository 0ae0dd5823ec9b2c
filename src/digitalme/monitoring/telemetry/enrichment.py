"""Enrichment: global properties and the request context, added off the request path.

Properties given by the caller win (the plan's ``TryAdd``): enrichment only
fills names that are not already present.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from digitalme.monitoring.telemetry.items import AnyItem


class Enricher:
    """Adds the plan's standard properties to every item."""

    def __init__(
        self,
        global_properties: Mapping[str, str],
        *,
        environment: str,
        version: str,
        machine_name: str | None = None,
    ) -> None:
        base: dict[str, str] = dict(global_properties)
        base.setdefault("Environment", environment)
        base.setdefault("MachineName", machine_name or socket.gethostname())
        base.setdefault("Version", version)
        self._base = base

    def enrich(self, item: AnyItem) -> None:
        properties = item.properties
        context = item.context
        if context is not None:
            for name, value in (
                ("OperationId", context.trace_id),
                ("RequestId", context.request_id),
                ("UserAgent", context.user_agent),
                ("ClientIP", context.client_ip),
                ("RequestPath", context.path),
                ("RequestMethod", context.method),
                ("AuthenticatedUserId", context.user_id),
                ("UserRole", context.user_role),
            ):
                if value is not None and name not in properties:
                    properties[name] = value
        for name, value in self._base.items():
            if name not in properties:
                properties[name] = value
