"""Optional telemetry exporters: OpenTelemetry OTLP/HTTP and Azure Monitor (Application Insights).

Each exporter is a :class:`~digitalme.monitoring.telemetry.sinks.TelemetrySink`
that the pipeline drives like the embedded store. Their third-party packages
come from pip extras (``digitalme[otlp]``, ``digitalme[azure]``) and are
imported lazily, so ``digitalme`` imports without them; constructing a sink
whose extra is missing raises :class:`MissingExtraError` naming the extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from digitalme.monitoring.errors import MonitoringError


class ExporterError(MonitoringError):
    """Root of the exporters' errors."""


class MissingExtraError(ExporterError, ImportError):
    """An exporter was configured but its optional packages are not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"the {extra!r} exporter needs optional packages that are not installed "
            f"(missing module {module!r}): pip install 'digitalme[{extra}]'"
        )
        self.extra = extra
        self.module = module


class ExportFailedError(ExporterError):
    """The receiver refused or did not take a signal; the sink worker retries the batch."""

    def __init__(self, exporter: str, signal: str) -> None:
        super().__init__(f"{exporter} export of {signal} failed")
        self.exporter = exporter
        self.signal = signal
        self.permanent = False  # the official exporters give no reason; always worth a retry


def require_extra(extra: str, modules: Iterable[str]) -> None:
    """Import ``modules`` or raise :class:`MissingExtraError` for ``extra``."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingExtraError(extra, module) from exc


# The sink modules import their third-party packages only when a sink is built,
# so importing them here keeps ``digitalme`` importable without the extras.
from digitalme.monitoring.telemetry.exporters.azure import AzureMonitorSink  # noqa: E402
from digitalme.monitoring.telemetry.exporters.otlp import OtlpSink  # noqa: E402

__all__ = [
    "AzureMonitorSink",
    "ExportFailedError",
    "ExporterError",
    "MissingExtraError",
    "OtlpSink",
    "require_extra",
]
