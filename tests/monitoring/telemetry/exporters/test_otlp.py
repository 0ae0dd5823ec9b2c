"""OtlpSink against a real OTLP/HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sys

import pytest

from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.telemetry.aggregation import HISTOGRAM_BOUNDS
from digitalme.monitoring.telemetry.context import TelemetryContext, current_context
from digitalme.monitoring.telemetry.exporters import ExportFailedError, MissingExtraError, OtlpSink
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import load_settings
from monitoring.telemetry.exporters.receivers import (
    CALLER_SPAN,
    REQUEST_SPAN,
    START,
    TRACE_ID,
    OtlpReceiver,
    Sample,
    attrs,
)

SERVER, CLIENT = 2, 3  # opentelemetry.proto SpanKind values
STATUS_ERROR = 2


def make_sink(receiver: OtlpReceiver, timeout: float = 5.0) -> OtlpSink:
    return OtlpSink(
        receiver.url,
        timeout=timeout,
        headers={"x-api-key": "collector-key"},
        service_version="9.9.9",
        instance="test-instance",
    )


async def test_requests_and_dependencies_become_spans(
    otlp_receiver: OtlpReceiver, sample: Sample
) -> None:
    sink = make_sink(otlp_receiver)
    await sink.write(sample.batch)
    await sink.close()

    spans = {span.name: span for span in otlp_receiver.spans()}
    assert set(spans) == {
        "GET /api/personality/{profile_id}",
        "POST /v1/messages",
        "SELECT profiles",
    }
    request = spans["GET /api/personality/{profile_id}"]
    assert request.kind == SERVER
    assert request.trace_id.hex() == TRACE_ID
    assert request.span_id.hex() == REQUEST_SPAN
    assert request.parent_span_id.hex() == CALLER_SPAN
    assert request.status.code == STATUS_ERROR
    assert request.start_time_unix_nano == int(START * 1e9)
    assert request.end_time_unix_nano - request.start_time_unix_nano == 125_000_000
    request_attrs = attrs(request.attributes)
    assert request_attrs["http.route"] == "/api/personality/{profile_id}"
    assert request_attrs["http.request.method"] == "GET"
    assert request_attrs["http.response.status_code"] == 500
    assert request_attrs["url.path"] == "/api/personality/42"
    assert request_attrs["client.address"] == "203.0.113.7"
    assert request_attrs["enduser.id"] == "user-1"
    assert request_attrs["RequestId"] == "req-1"

    claude = spans["POST /v1/messages"]
    assert claude.kind == CLIENT
    assert claude.trace_id.hex() == TRACE_ID
    assert claude.parent_span_id.hex() == REQUEST_SPAN
    assert claude.span_id.hex() != REQUEST_SPAN
    assert claude.status.code == 0  # UNSET: success
    claude_attrs = attrs(claude.attributes)
    assert claude_attrs["server.address"] == "api.anthropic.com"
    assert claude_attrs["server.port"] == 443
    assert claude_attrs["http.response.status_code"] == 200
    assert attrs(spans["SELECT profiles"].attributes)["db.system"] == "sql"

    resource = otlp_receiver.resources()[0]
    assert resource["service.name"] == "digitalme"
    assert resource["service.version"] == "9.9.9"
    assert resource["service.instance.id"] == "test-instance"
    headers = otlp_receiver.requests[0][1]
    assert headers["x-api-key"] == "collector-key"
    assert headers["content-type"] == "application/x-protobuf"


async def test_exceptions_and_events_become_log_records(
    otlp_receiver: OtlpReceiver, sample: Sample
) -> None:
    sink = make_sink(otlp_receiver)
    await sink.write(sample.batch)
    await sink.close()

    logs = {
        record.event_name or record.body.string_value: record for record in otlp_receiver.logs()
    }
    assert set(logs) == {"profile is broken", "Personality.Created", "Security.SqlInjection"}
    exception = logs["profile is broken"]
    assert (exception.severity_number, exception.severity_text) == (17, "ERROR")
    assert exception.trace_id.hex() == TRACE_ID
    assert exception.span_id.hex() == REQUEST_SPAN
    assert attrs(exception.attributes)["exception.type"] == "ValueError"
    assert "Traceback" in attrs(exception.attributes)["exception.stacktrace"]

    event = logs["Personality.Created"]
    assert (event.severity_number, event.severity_text) == (9, "INFO")
    assert attrs(event.attributes)["measurement.Traits"] == 5.0
    assert attrs(event.attributes)["ProfileId"] == "42"

    security = logs["Security.SqlInjection"]
    assert (security.severity_number, security.severity_text) == (21, "FATAL")
    assert security.trace_id == b""  # recorded outside a request
    security_attrs = attrs(security.attributes)
    assert security_attrs["security.severity"] == "Critical"
    assert security_attrs["client.address"] == "198.51.100.9"
    assert "microsoft.custom_event.name" not in security_attrs


async def test_buckets_become_delta_histograms(otlp_receiver: OtlpReceiver, sample: Sample) -> None:
    sink = make_sink(otlp_receiver)
    await sink.write(sample.batch)
    ((key, bucket),) = sample.batch.buckets
    bucket.add(40.0)  # the bucket fills further and is sent again, whole
    await sink.write(TelemetryBatch(buckets=[(key, bucket)]))
    await sink.write(TelemetryBatch(buckets=[(key, bucket)]))  # unchanged: nothing sent
    await sink.close()

    metrics = otlp_receiver.metrics()
    assert [m.name for m in metrics] == ["Request.Duration", "Request.Duration"]
    first, second = (m.histogram.data_points[0] for m in metrics)
    assert metrics[0].histogram.aggregation_temporality == 1  # DELTA
    assert first.count == 4
    assert first.sum == sum(sample.values)
    assert (first.min, first.max) == (4.0, 3000.0)
    assert list(first.explicit_bounds) == list(HISTOGRAM_BOUNDS)
    assert sum(first.bucket_counts) == 4
    assert first.bucket_counts[HISTOGRAM_BOUNDS.index(5)] == 1
    assert first.bucket_counts[HISTOGRAM_BOUNDS.index(25)] == 1
    assert first.bucket_counts[HISTOGRAM_BOUNDS.index(250)] == 1
    assert first.bucket_counts[HISTOGRAM_BOUNDS.index(5000)] == 1
    assert first.start_time_unix_nano == int(START * 1e9)
    assert first.time_unix_nano == int((START + 10) * 1e9)
    assert attrs(first.attributes) == {"route": "GET /api/personality/{profile_id}"}
    assert (second.count, second.sum) == (1, 40.0)
    assert second.bucket_counts[HISTOGRAM_BOUNDS.index(50)] == 1
    assert sum(second.bucket_counts) == 1


async def test_refused_export_raises_then_recovers(
    otlp_receiver: OtlpReceiver, sample: Sample
) -> None:
    sink = make_sink(otlp_receiver, timeout=0.5)  # shorter than the exporter's first backoff
    otlp_receiver.status = 503
    with pytest.raises(ExportFailedError) as failure:
        await sink.write(sample.batch)
    assert failure.value.signal == "traces"
    assert otlp_receiver.refused >= 1
    assert otlp_receiver.spans() == []

    otlp_receiver.status = 200
    await sink.write(sample.batch)  # the sink worker's retry of the same batch
    await sink.close()
    assert len(otlp_receiver.spans()) == 3
    assert len(otlp_receiver.logs()) == 3
    assert otlp_receiver.metrics()[0].histogram.data_points[0].count == 4


async def test_failure_after_traces_does_not_resend_them(
    otlp_receiver: OtlpReceiver, sample: Sample
) -> None:
    sink = make_sink(otlp_receiver, timeout=0.5)
    batch = sample.batch
    traces_only = TelemetryBatch(items=batch.items[:1])
    await sink.write(traces_only)
    otlp_receiver.status = 503
    with pytest.raises(ExportFailedError):
        await sink.write(batch)
    otlp_receiver.status = 200
    await sink.write(batch)
    await sink.close()
    names = [span.name for span in otlp_receiver.spans()]
    # One span from the first batch, three from the retried batch, none twice.
    assert len(names) == 4
    assert len(otlp_receiver.logs()) == 3


async def test_through_monitoring_pipeline(otlp_receiver: OtlpReceiver) -> None:
    clock = FakeClock()
    settings = load_settings(
        telemetry={"enable_adaptive_sampling": False},
        health={"prober_enabled": False},  # its status events would join the exported logs
    )
    sink = make_sink(otlp_receiver)
    monitoring = Monitoring(settings, clock=clock, sinks=[sink], version="9.9.9", strict=True)
    await monitoring.start()
    token = current_context.set(TelemetryContext(trace_id=TRACE_ID, span_id=REQUEST_SPAN))
    try:
        monitoring.client.track_request(
            "POST /api/conversations", clock.time(), 0.25, 201, success=True
        )
        monitoring.client.track_event("Conversation.Started", {"Model": "claude"})
    finally:
        current_context.reset(token)
    await monitoring.pipeline.flush()
    await monitoring.stop()

    (span,) = otlp_receiver.spans()
    assert span.name == "POST /api/conversations"
    assert span.trace_id.hex() == TRACE_ID
    span_attrs = attrs(span.attributes)
    assert span_attrs["http.response.status_code"] == 201
    assert span_attrs["Version"] == "9.9.9"  # enrichment reached the exporter
    assert [r.body.string_value for r in otlp_receiver.logs()] == ["Conversation.Started"]
    names = {m.name for m in otlp_receiver.metrics()}
    assert names, "request durations feed metric series"


async def test_sink_worker_retries_until_receiver_recovers(otlp_receiver: OtlpReceiver) -> None:
    from digitalme.monitoring.telemetry.sink_worker import SinkWorker

    sink = make_sink(otlp_receiver, timeout=0.3)
    worker = SinkWorker(sink, max_pending_items=100, first_backoff=0.05)
    worker.start()
    otlp_receiver.status = 503
    bucket = Bucket(start=START, resolution=10)
    bucket.add(1.0)
    worker.offer(TelemetryBatch(buckets=[(SeriesKey("Jobs.Duration"), bucket)]))
    for _ in range(100):
        if otlp_receiver.refused:
            break
        await asyncio.sleep(0.02)
    assert worker.failing
    otlp_receiver.status = 200
    assert await worker.flush(10.0)
    await worker.stop(1.0)
    assert [m.name for m in otlp_receiver.metrics()] == ["Jobs.Duration"]


def test_missing_extra_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(MissingExtraError) as missing:
        OtlpSink("http://127.0.0.1:4318")
    assert missing.value.extra == "otlp"
    assert "digitalme[otlp]" in str(missing.value)
