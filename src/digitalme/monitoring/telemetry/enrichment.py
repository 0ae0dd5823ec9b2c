"""Enrichment: global properties and the request context, added off the request path.

Properties given by the caller win (the plan's ``TryAdd``): enrichment only
fills names that are not already present.

Enrichment runs after the caller's own properties have been redacted, and adds
values that are safe already: the global properties and the machine's are
redacted once, when the enricher is built; the context's values that a client
controls (request id, user agent, path, ...) are redacted one by one; the trace
id, 32 hex digits drawn or validated by us, needs nothing.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from digitalme.monitoring.telemetry.context import TelemetryContext
from digitalme.monitoring.telemetry.redaction import Redactor


class Enricher:
    """Adds the plan's standard properties to every item."""

    def __init__(
        self,
        global_properties: Mapping[str, str],
        *,
        environment: str,
        version: str,
        redactor: Redactor,
        machine_name: str | None = None,
    ) -> None:
        base: dict[str, object] = dict(global_properties)
        base.setdefault("Environment", environment)
        base.setdefault("MachineName", machine_name or socket.gethostname())
        base.setdefault("Version", version)
        self._base = redactor.redact_properties(base)
        self._redact = redactor.redact_text

    def enrich(self, properties: dict[str, object], context: TelemetryContext | None) -> None:
        """Add the context's and the global properties to ``properties`` (already redacted)."""
        if context is not None:
            # Unrolled: this runs for every stored item.
            redact = self._redact
            if "OperationId" not in properties:
                properties["OperationId"] = context.trace_id
            if context.request_id is not None and "RequestId" not in properties:
                properties["RequestId"] = redact(context.request_id)
            if context.user_agent is not None and "UserAgent" not in properties:
                properties["UserAgent"] = redact(context.user_agent)
            if context.client_ip is not None and "ClientIP" not in properties:
                properties["ClientIP"] = redact(context.client_ip)
            if context.path is not None and "RequestPath" not in properties:
                properties["RequestPath"] = redact(context.path)
            if context.method is not None and "RequestMethod" not in properties:
                properties["RequestMethod"] = redact(context.method)
            if context.user_id is not None and "AuthenticatedUserId" not in properties:
                properties["AuthenticatedUserId"] = redact(context.user_id)
            if context.user_role is not None and "UserRole" not in properties:
                properties["UserRole"] = redact(context.user_role)
        for name, value in self._base.items():
            if name not in properties:
                properties[name] = value
