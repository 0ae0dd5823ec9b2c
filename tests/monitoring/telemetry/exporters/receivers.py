"""Loopback receivers (OTLP/HTTP collector, Application Insights ingestion) and sample telemetry."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar


@dataclass
class Receiver:
    """What a loopback receiver got; ``status`` is what it answers (503 to simulate an outage)."""

    url: str = ""
    status: int = 200
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, path: str) -> list[bytes]:
        with self.lock:
            return [body for p, _, body in self.requests if p == path]


ReceiverT = TypeVar("ReceiverT", bound=Receiver)


def serve(receiver: ReceiverT, answer: Any) -> Iterator[ReceiverT]:
    """Run ``receiver`` on an ephemeral loopback port until the generator closes."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            if receiver.status != 200:
                with receiver.lock:
                    receiver.refused += 1
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with receiver.lock:
                receiver.requests.append(
                    (
                        "/" + self.path.lstrip("/"),
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
            content_type, payload = answer("/" + self.path.lstrip("/"), body)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def otlp_answer(path: str, body: bytes) -> tuple[str, bytes]:
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    responses: dict[str, Any] = {
        "/v1/traces": trace_service_pb2.ExportTraceServiceResponse(),
        "/v1/logs": logs_service_pb2.ExportLogsServiceResponse(),
        "/v1/metrics": metrics_service_pb2.ExportMetricsServiceResponse(),
    }
    return "application/x-protobuf", responses[path].SerializeToString()


class OtlpReceiver(Receiver):
    """Decodes what arrived with ``opentelemetry.proto``."""

    def spans(self) -> list[Any]:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        spans = []
        for body in self.bodies("/v1/traces"):
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    spans.extend(scope_spans.spans)
        return spans

    def resources(self) -> list[dict[str, Any]]:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        found = []
        for body in self.bodies("/v1/traces"):
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            found.extend(attrs(rs.resource.attributes) for rs in request.resource_spans)
        return found

    def logs(self) -> list[Any]:
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

        records = []
        for body in self.bodies("/v1/logs"):
            request = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
            for resource_logs in request.resource_logs:
                for scope_logs in resource_logs.scope_logs:
                    records.extend(scope_logs.log_records)
        return records

    def metrics(self) -> list[Any]:
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

        metrics = []
        for body in self.bodies("/v1/metrics"):
            request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    metrics.extend(scope_metrics.metrics)
        return metrics


def attrs(values: Any) -> dict[str, Any]:
    """OTLP KeyValue list -> plain dict."""
    out: dict[str, Any] = {}
    for kv in values:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


class AppInsightsReceiver(Receiver):
    """Records the JSON envelopes posted to ``/v2.1/track``."""

    def envelopes(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for body in self.bodies("/v2.1/track"):
            data = json.loads(body)
            found.extend(data if isinstance(data, list) else [data])
        return found

    def of_type(self, base_type: str) -> list[dict[str, Any]]:
        return [e for e in self.envelopes() if e["data"]["baseType"] == base_type]


def track_answer(path: str, body: bytes) -> tuple[str, bytes]:
    data = json.loads(body)
    count = len(data) if isinstance(data, list) else 1
    answer = {"itemsReceived": count, "itemsAccepted": count, "errors": []}
    return "application/json", json.dumps(answer).encode()


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
REQUEST_SPAN = "00f067aa0ba902b7"
CALLER_SPAN = "b7ad6b7169203331"
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@dataclass
class Sample:
    """A batch of one of each item kind, and the bucket values behind its metric."""

    batch: Any
    values: list[float]


def make_sample() -> Sample:
    from digitalme.monitoring.telemetry.context import TelemetryContext
    from digitalme.monitoring.telemetry.items import (
        DependencyItem,
        EventItem,
        ExceptionItem,
        RequestItem,
        SecurityEventItem,
        Severity,
    )
    from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
    from digitalme.monitoring.telemetry.sketch import Bucket

    ctx = TelemetryContext(
        trace_id=TRACE_ID,
        span_id=REQUEST_SPAN,
        parent_span_id=CALLER_SPAN,
        method="GET",
        path="/api/personality/42",
        client_ip="203.0.113.7",
        user_id="user-1",
        user_role="admin",
    )
    items = [
        RequestItem(
            time=START,
            context=ctx,
            properties={"RequestId": "req-1"},
            name="GET /api/personality/{profile_id}",
            duration_ms=125.0,
            status_code=500,
            success=False,
        ),
        DependencyItem(
            time=START + 0.01,
            context=ctx,
            type="HTTP",
            target="api.anthropic.com:443",
            name="POST /v1/messages",
            data="https://api.anthropic.com/v1/messages",
            duration_ms=80.0,
            success=True,
            result_code="200",
        ),
        DependencyItem(
            time=START + 0.02,
            context=ctx,
            type="SQL",
            target="digitalme",
            name="SELECT profiles",
            data="SELECT profiles",
            duration_ms=3.0,
            success=True,
        ),
        ExceptionItem(
            time=START + 0.1,
            context=ctx,
            type="ValueError",
            message="profile is broken",
            stack="Traceback (most recent call last): ...",
        ),
        EventItem(
            time=START + 0.1,
            context=ctx,
            name="Personality.Created",
            properties={"ProfileId": "42"},
            measurements={"Traits": 5.0},
        ),
        SecurityEventItem(
            time=START + 0.2,
            context=None,
            event_type="SqlInjection",
            severity=Severity.CRITICAL,
            details="' OR 1=1 --",
            client_ip="198.51.100.9",
        ),
    ]
    values = [4.0, 20.0, 120.0, 3000.0]
    bucket = Bucket(start=START, resolution=10)
    for value in values:
        bucket.add(value)
    key = SeriesKey("Request.Duration", (("route", "GET /api/personality/{profile_id}"),))
    return Sample(TelemetryBatch(items=items, buckets=[(key, bucket)]), values)
