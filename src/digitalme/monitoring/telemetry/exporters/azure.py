"""Azure Monitor (Application Insights) exporter through ``azure-monitor-opentelemetry-exporter``.

The same conversion as the OTLP sink feeds Microsoft's exporters, which turn
SERVER spans into ``RequestData``, CLIENT spans into ``RemoteDependencyData``,
log records with ``exception.*`` attributes into ``ExceptionData``, events
(marked with ``microsoft.custom_event.name``) into ``EventData`` and histogram
points into ``MetricData``, and post them to the connection string's
``IngestionEndpoint`` (``/v2.1/track``).

Hermetic by design: no offline storage (failed batches are retried by our sink
worker, not from a temp directory), no in-exporter HTTP retries (same reason),
no statsbeat / SDK-stats self-telemetry to Microsoft. The exporter's
"OneSettings" control plane can only be switched off by the environment
variable ``APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED=true``; deployments that
must not call it set that variable (the tests do).

The connection string holds the instrumentation key: it is kept only inside
the exporters and never appears in this module's logs or reprs.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

from digitalme.monitoring.telemetry.exporters import require_extra
from digitalme.monitoring.telemetry.exporters.otlp import (
    OTEL_MODULES,
    OtelConverter,
    OtelExportSink,
)

AZURE_MODULES = (*OTEL_MODULES, "azure.monitor.opentelemetry.exporter")


class AzureMonitorSink(OtelExportSink):
    """Exports to Application Insights from a connection string.

    ``timeout`` bounds each HTTP call. ``self_telemetry`` re-enables the
    exporter's statsbeat / SDK stats (usage data sent to Microsoft), off by
    default.
    """

    name = "azure_monitor"
    exporter_name = "Azure Monitor"

    def __init__(
        self,
        connection_string: str,
        *,
        timeout: float = 10.0,
        service_name: str = "digitalme",
        service_version: str = "0.0.0",
        instance: str = "",
        self_telemetry: bool = False,
    ) -> None:
        require_extra("azure", AZURE_MODULES)
        from azure.monitor.opentelemetry.exporter import (
            AzureMonitorLogExporter,
            AzureMonitorMetricExporter,
            AzureMonitorTraceExporter,
        )

        options: dict[str, Any] = {
            "connection_string": connection_string,
            "disable_offline_storage": True,
            # azure-core's retry policy would retry inside the worker thread;
            # our sink worker already retries with backoff.
            "retry_total": 0,
            "timeout": timeout,
        }
        if not self_telemetry:
            # The exporter skips statsbeat and customer SDK stats for exporters
            # marked as collecting instrumentation data; this is the only
            # per-exporter switch (the alternative is a process-wide env var).
            options["instrumentation_collection"] = True
        converter = OtelConverter(
            service_name=service_name,
            service_version=service_version,
            instance=instance or socket.gethostname(),
            azure_events=True,
        )
        super().__init__(
            converter,
            # The trace exporter sends a "_OTELRESOURCE_" metric describing the
            # resource, read from a tracer provider; we have none installed
            # globally, so it gets an object carrying our resource.
            AzureMonitorTraceExporter(
                tracer_provider=SimpleNamespace(resource=converter.resource), **options
            ),
            AzureMonitorLogExporter(**options),
            AzureMonitorMetricExporter(**options),
        )

    def __repr__(self) -> str:
        # Never the connection string: it carries the instrumentation key.
        return f"{type(self).__name__}()"
