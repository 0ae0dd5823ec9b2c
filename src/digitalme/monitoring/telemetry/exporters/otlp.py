"""OpenTelemetry OTLP/HTTP exporter: traces, logs and metrics with the official exporters.

Our items become OpenTelemetry SDK objects that the official
``opentelemetry-exporter-otlp-proto-http`` exporters encode and send:

- requests -> SERVER spans, dependencies -> CLIENT spans (child of the request span);
- exceptions, custom events and security events -> log records;
- metric buckets -> DELTA histogram points with explicit bounds
  (:data:`~digitalme.monitoring.telemetry.aggregation.HISTOGRAM_BOUNDS`).

Why delta histograms: our buckets are cumulative per time window and a bucket
that is still filling is sent again each flush. We remember what was already
exported per (series, window) and send only the difference (count, sum and
per-bound counts), so a backend that adds points up gets exact totals. Min and
max of such a follow-up point are those of the whole window (an OTLP point has
no way to say "unknown"), which is a bound, not the exact delta extreme.

The conversion (:class:`OtelConverter`) is shared with the Azure Monitor sink.
Every OpenTelemetry import is local so this module imports without the extra.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from digitalme.monitoring.telemetry.aggregation import HISTOGRAM_BOUNDS
from digitalme.monitoring.telemetry.context import new_span_id, new_trace_id
from digitalme.monitoring.telemetry.exporters import ExportFailedError, require_extra
from digitalme.monitoring.telemetry.items import (
    AnyItem,
    DependencyItem,
    EventItem,
    ExceptionItem,
    Item,
    RequestItem,
    SecurityEventItem,
    Severity,
)
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.metrics.export import MetricsData
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext

OTEL_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk._logs",
    "opentelemetry.sdk.metrics.export",
)
OTLP_MODULES = (*OTEL_MODULES, "opentelemetry.exporter.otlp.proto.http.trace_exporter")

SCOPE_NAME = "digitalme.monitoring"
# How long we remember what was exported for a window: late updates to a
# window older than this (after the newest one seen) are sent whole again.
_EXPORTED_MEMORY_SECONDS = 3600.0

# Our security severities on the OpenTelemetry severity scale.
_SECURITY_SEVERITY = {
    Severity.LOW: ("INFO", 9),
    Severity.MEDIUM: ("WARN", 13),
    Severity.HIGH: ("ERROR", 17),
    Severity.CRITICAL: ("FATAL", 21),
}


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


def _text_attributes(properties: Mapping[str, object]) -> dict[str, Any]:
    # Properties are already redacted strings after the pipeline; coerce anyway
    # because an OTel attribute must be a primitive.
    return {str(k): v if isinstance(v, str) else str(v) for k, v in properties.items()}


def _split_host(target: str) -> tuple[str, int | None]:
    host, sep, port = target.rpartition(":")
    if sep and port.isdigit() and host:
        return host.strip("[]"), int(port)
    return target, None


@dataclass(slots=True)
class _Sent:
    """What was exported so far for one (series, window)."""

    count: int
    sum: float
    counts: list[int]


def bucket_counts(bucket: Bucket) -> list[int]:
    """Counts per :data:`HISTOGRAM_BOUNDS` bucket (plus overflow), derived from the sketch.

    The sketch keeps values in log-spaced bins with 1% relative error; each bin
    falls into the explicit bucket of its representative value, so a value
    within 1% of a bound may land in the neighbouring bucket. The total is
    forced to ``bucket.count``.
    """
    counts = [0] * (len(HISTOGRAM_BOUNDS) + 1)
    if bucket.count == 0:
        return counts
    from bisect import bisect_left

    sketch: Any = bucket.sketch  # ddsketch ships no type information
    # Zero and negative values (rare: durations and sizes) fall below the first bound.
    low = float(sketch._zero_count) + float(sketch._negative_store.count)
    weights = [low] + [0.0] * len(HISTOGRAM_BOUNDS)
    store = sketch._store
    for index, weight in enumerate(store.bins):
        if weight:
            value = float(sketch._mapping.value(index + store.offset))
            weights[bisect_left(HISTOGRAM_BOUNDS, value)] += float(weight)
    counts = [round(weight) for weight in weights]
    drift = bucket.count - sum(counts)
    if drift:
        # Rounding of fractional weights (sampling): settle on the fullest bucket.
        fullest = max(range(len(counts)), key=counts.__getitem__)
        counts[fullest] = max(0, counts[fullest] + drift)
    return counts


class OtelConverter:
    """Turns items and buckets into OpenTelemetry SDK spans, log records and metrics.

    ``azure_events`` marks custom and security events the way the Azure Monitor
    exporter recognises them (``microsoft.custom_event.name``), so they become
    ``EventData`` rather than trace messages there.
    """

    def __init__(
        self,
        *,
        service_name: str,
        service_version: str,
        instance: str,
        azure_events: bool = False,
    ) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self.resource: Resource = Resource.create(
            {
                "service.name": service_name,
                "service.version": service_version,
                "service.instance.id": instance,
                "host.name": socket.gethostname(),
            }
        )
        self.scope: InstrumentationScope = InstrumentationScope(SCOPE_NAME, service_version)
        self.azure_events = azure_events
        self._exported: dict[tuple[SeriesKey, float, int], _Sent] = {}

    # -- traces -------------------------------------------------------------

    def spans(self, items: Sequence[AnyItem]) -> list[ReadableSpan]:
        """Requests as SERVER spans and dependencies as CLIENT spans."""
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanKind, Status, StatusCode

        spans: list[ReadableSpan] = []
        for item in items:
            if isinstance(item, RequestItem):
                context, parent = self._request_ids(item)
                kind = SpanKind.SERVER
                attributes = self._request_attributes(item)
            elif isinstance(item, DependencyItem):
                context, parent = self._dependency_ids(item)
                kind = SpanKind.CLIENT
                attributes = self._dependency_attributes(item)
            else:
                continue
            status = Status(StatusCode.UNSET) if item.success else Status(StatusCode.ERROR)
            start = _ns(item.time)
            spans.append(
                ReadableSpan(
                    item.name,
                    context=context,
                    parent=parent,
                    resource=self.resource,
                    attributes=attributes,
                    kind=kind,
                    status=status,
                    start_time=start,
                    # Added in nanoseconds: epoch seconds as floats lose the sub-µs part.
                    end_time=start + round(item.duration_ms * 1_000_000),
                    instrumentation_scope=self.scope,
                )
            )
        return spans

    @staticmethod
    def _span_context(trace_id: str, span_id: str) -> SpanContext:
        from opentelemetry.trace import SpanContext, TraceFlags

        return SpanContext(
            int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=TraceFlags(1)
        )

    def _request_ids(self, item: RequestItem) -> tuple[SpanContext, SpanContext | None]:
        ctx = item.context
        if ctx is None:
            return self._span_context(new_trace_id(), new_span_id()), None
        parent = ctx.parent_span_id
        return (
            self._span_context(ctx.trace_id, ctx.span_id),
            self._span_context(ctx.trace_id, parent) if parent else None,
        )

    def _dependency_ids(self, item: DependencyItem) -> tuple[SpanContext, SpanContext | None]:
        ctx = item.context
        if ctx is None:
            return self._span_context(new_trace_id(), new_span_id()), None
        # A dependency is a call made while serving the request: its child span.
        return (
            self._span_context(ctx.trace_id, new_span_id()),
            self._span_context(ctx.trace_id, ctx.span_id),
        )

    @staticmethod
    def _common_attributes(item: Item) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        ctx = item.context
        if ctx is not None:
            if ctx.user_id:
                attributes["enduser.id"] = ctx.user_id
            if ctx.user_role:
                attributes["enduser.role"] = ctx.user_role
        if item.weight != 1.0:
            attributes["sampling.weight"] = item.weight
        # Caller-given and enriched properties last: they win over derived ones.
        attributes.update(_text_attributes(item.properties))
        return attributes

    def _request_attributes(self, item: RequestItem) -> dict[str, Any]:
        method, _, route = item.name.partition(" ")
        attributes: dict[str, Any] = {"http.response.status_code": item.status_code}
        if route:
            attributes["http.request.method"] = method
            attributes["http.route"] = route
        ctx = item.context
        if ctx is not None:
            if ctx.method:
                attributes["http.request.method"] = ctx.method
            if ctx.path:
                attributes["url.path"] = ctx.path
            if ctx.client_ip:
                attributes["client.address"] = ctx.client_ip
            if ctx.user_agent:
                attributes["user_agent.original"] = ctx.user_agent
        attributes.update(self._common_attributes(item))
        return attributes

    def _dependency_attributes(self, item: DependencyItem) -> dict[str, Any]:
        kind = item.type.lower()
        host, port = _split_host(item.target)
        attributes: dict[str, Any] = {"dependency.type": item.type}
        if kind == "http":
            method = item.name.partition(" ")[0]
            attributes["http.request.method"] = method
            if item.data:
                attributes["url.full"] = item.data
            attributes["server.address"] = host
            if port is not None:
                attributes["server.port"] = port
            if item.result_code.isdigit():
                attributes["http.response.status_code"] = int(item.result_code)
        else:
            # SQL statements are recorded by kind and table, never with parameters.
            attributes["db.system"] = "redis" if kind == "redis" else kind
            if item.data:
                attributes["db.statement"] = item.data
            if kind == "redis":
                attributes["server.address"] = host
                if port is not None:
                    attributes["server.port"] = port
            else:
                attributes["db.name"] = item.target
            if item.result_code:
                attributes["db.response.status_code"] = item.result_code
        attributes.update(self._common_attributes(item))
        return attributes

    # -- logs ---------------------------------------------------------------

    def log_records(self, items: Sequence[AnyItem]) -> list[ReadableLogRecord]:
        """Exceptions (ERROR), security events (by severity) and events (INFO) as log records."""
        from opentelemetry._logs import LogRecord, SeverityNumber
        from opentelemetry.sdk._logs import ReadableLogRecord
        from opentelemetry.trace import NonRecordingSpan, set_span_in_context

        records: list[ReadableLogRecord] = []
        for item in items:
            attributes: dict[str, Any] = {}
            event_name: str | None = None
            if isinstance(item, ExceptionItem):
                severity_text, severity_number = "ERROR", 17
                body = item.message
                attributes["exception.type"] = item.type
                attributes["exception.message"] = item.message
                if item.stack:
                    attributes["exception.stacktrace"] = item.stack
                attributes["exception.severity"] = str(item.severity)
            elif isinstance(item, SecurityEventItem):
                severity_text, severity_number = _SECURITY_SEVERITY[item.severity]
                event_name = f"Security.{item.event_type}"
                body = f"{item.event_type}: {item.details}"
                attributes["security.event_type"] = item.event_type
                attributes["security.severity"] = str(item.severity)
                attributes["security.details"] = item.details
                if item.client_ip:
                    attributes["client.address"] = item.client_ip
                if item.user_id:
                    attributes["enduser.id"] = item.user_id
            elif isinstance(item, EventItem):
                severity_text, severity_number = "INFO", 9
                event_name = item.name
                body = item.name
                for key, value in item.measurements.items():
                    attributes[f"measurement.{key}"] = float(value)
            else:
                continue
            if event_name is not None and self.azure_events:
                attributes["microsoft.custom_event.name"] = event_name
            attributes.update(self._common_attributes(item))
            context = None
            if item.context is not None:
                span = NonRecordingSpan(
                    self._span_context(item.context.trace_id, item.context.span_id)
                )
                context = set_span_in_context(span)
            record = LogRecord(
                timestamp=_ns(item.time),
                observed_timestamp=_ns(item.time),
                context=context,
                severity_text=severity_text,
                severity_number=SeverityNumber(severity_number),
                body=body,
                attributes=attributes,
                event_name=event_name,
            )
            records.append(
                ReadableLogRecord(
                    log_record=record, resource=self.resource, instrumentation_scope=self.scope
                )
            )
        return records

    # -- metrics ------------------------------------------------------------

    def metrics(
        self, buckets: Sequence[tuple[SeriesKey, Bucket]]
    ) -> tuple[MetricsData | None, dict[tuple[SeriesKey, float, int], _Sent]]:
        """Delta histogram points for what changed since the last export.

        Returns the data and the bookkeeping to :meth:`commit` once the export
        succeeded (so a failed export is sent again, not lost).
        """
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Histogram,
            HistogramDataPoint,
            Metric,
            MetricsData,
            ResourceMetrics,
            ScopeMetrics,
        )

        # The sink worker may carry older states of a bucket forward: the last one wins.
        latest: dict[tuple[SeriesKey, float, int], Bucket] = {}
        for key, bucket in buckets:
            latest[(key, bucket.start, bucket.resolution)] = bucket
        points: dict[str, list[HistogramDataPoint]] = {}
        pending: dict[tuple[SeriesKey, float, int], _Sent] = {}
        for (key, start, resolution), bucket in latest.items():
            if bucket.count == 0:
                continue
            counts = bucket_counts(bucket)
            sent = self._exported.get((key, start, resolution))
            if sent is None:
                delta_count, delta_sum, delta_counts = bucket.count, bucket.sum, counts
            else:
                delta_count = bucket.count - sent.count
                delta_sum = bucket.sum - sent.sum
                delta_counts = [max(0, c - s) for c, s in zip(counts, sent.counts, strict=True)]
            if delta_count <= 0:
                continue
            pending[(key, start, resolution)] = _Sent(bucket.count, bucket.sum, counts)
            low = bucket.min if math.isfinite(bucket.min) else 0.0
            high = bucket.max if math.isfinite(bucket.max) else 0.0
            points.setdefault(key.name, []).append(
                HistogramDataPoint(
                    attributes=dict(key.dimensions),
                    start_time_unix_nano=_ns(start),
                    time_unix_nano=_ns(start + resolution),
                    count=delta_count,
                    sum=delta_sum,
                    bucket_counts=delta_counts,
                    explicit_bounds=list(HISTOGRAM_BOUNDS),
                    min=low,
                    max=high,
                )
            )
        if not points:
            return None, pending
        metrics = [
            Metric(
                name=name,
                description=None,
                unit=None,
                data=Histogram(
                    data_points=data_points,
                    aggregation_temporality=AggregationTemporality.DELTA,
                ),
            )
            for name, data_points in points.items()
        ]
        data = MetricsData(
            resource_metrics=[
                ResourceMetrics(
                    resource=self.resource,
                    scope_metrics=[ScopeMetrics(scope=self.scope, metrics=metrics, schema_url="")],
                    schema_url="",
                )
            ]
        )
        return data, pending

    def commit(self, pending: Mapping[tuple[SeriesKey, float, int], _Sent]) -> None:
        """Remember what was exported; forget windows long past."""
        self._exported.update(pending)
        if not self._exported:
            return
        newest = max(start for _, start, _ in self._exported)
        horizon = newest - _EXPORTED_MEMORY_SECONDS
        for window in [w for w in self._exported if w[1] < horizon]:
            del self._exported[window]


class SpanExporterLike(Protocol):
    def export(self, spans: Sequence[ReadableSpan], /) -> Any: ...
    def shutdown(self) -> Any: ...


class LogExporterLike(Protocol):
    def export(self, batch: Sequence[ReadableLogRecord], /) -> Any: ...
    def shutdown(self) -> Any: ...


class MetricExporterLike(Protocol):
    def export(self, metrics_data: MetricsData, /, timeout_millis: float = ...) -> Any: ...
    def shutdown(self, timeout_millis: float = ...) -> Any: ...


class OtelExportSink:
    """A sink that sends batches through three OpenTelemetry SDK exporters.

    The SDK exporters block (HTTP with their own bounded retries), so they run
    in a worker thread. A signal that fails raises :class:`ExportFailedError`
    and the sink worker retries the batch; signals of that batch that already
    went through are not sent twice.
    """

    name = "otel"
    exporter_name = "OpenTelemetry"

    def __init__(
        self,
        converter: OtelConverter,
        spans: SpanExporterLike,
        logs: LogExporterLike,
        metrics: MetricExporterLike,
    ) -> None:
        self.converter = converter
        self._spans = spans
        self._logs = logs
        self._metrics = metrics
        # The batch being retried and which of its signals already arrived.
        self._current: TelemetryBatch | None = None
        self._done: set[str] = set()
        self._lock = asyncio.Lock()

    async def write(self, batch: TelemetryBatch) -> None:
        # One export at a time: the converter's delta bookkeeping is not shared-safe.
        async with self._lock:
            if batch is not self._current:
                self._current, self._done = batch, set()
            await asyncio.to_thread(self._export, batch)
            self._current, self._done = None, set()

    def _export(self, batch: TelemetryBatch) -> None:
        from opentelemetry.sdk._logs.export import LogRecordExportResult
        from opentelemetry.sdk.metrics.export import MetricExportResult
        from opentelemetry.sdk.trace.export import SpanExportResult

        if "traces" not in self._done:
            spans = self.converter.spans(batch.items)
            if spans and self._spans.export(spans) != SpanExportResult.SUCCESS:
                raise ExportFailedError(self.exporter_name, "traces")
            self._done.add("traces")
        if "logs" not in self._done:
            records = self.converter.log_records(batch.items)
            if records and self._logs.export(records) != LogRecordExportResult.SUCCESS:
                raise ExportFailedError(self.exporter_name, "logs")
            self._done.add("logs")
        data, pending = self.converter.metrics(batch.buckets)
        if data is not None and self._metrics.export(data) != MetricExportResult.SUCCESS:
            raise ExportFailedError(self.exporter_name, "metrics")
        self.converter.commit(pending)

    async def close(self) -> None:
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._spans.shutdown()
        self._logs.shutdown()
        self._metrics.shutdown()


class OtlpSink(OtelExportSink):
    """Exports to an OTLP/HTTP receiver (an OpenTelemetry Collector, Jaeger, Tempo, ...).

    ``endpoint`` is the base URL (``http://collector:4318``); the signals go to
    ``/v1/traces``, ``/v1/logs`` and ``/v1/metrics`` under it. ``timeout``
    bounds each signal's export including the exporter's own retries, so the
    sink worker's write timeout should be at least three times as long.
    """

    name = "otlp"
    exporter_name = "OTLP"

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        service_name: str = "digitalme",
        service_version: str = "0.0.0",
        instance: str = "",
    ) -> None:
        require_extra("otlp", OTLP_MODULES)
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = endpoint.rstrip("/")
        self.endpoint = base
        header_map = dict(headers or {})
        super().__init__(
            OtelConverter(
                service_name=service_name,
                service_version=service_version,
                instance=instance or socket.gethostname(),
            ),
            OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=timeout, headers=header_map),
            OTLPLogExporter(endpoint=f"{base}/v1/logs", timeout=timeout, headers=header_map),
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=timeout, headers=header_map),
        )
