"""AzureMonitorSink against a real Application Insights ingestion receiver on 127.0.0.1."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

pytest.importorskip("azure.monitor.opentelemetry.exporter", reason="needs the azure extra")

from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.telemetry.context import TelemetryContext, current_context
from digitalme.monitoring.telemetry.exporters import (
    AzureMonitorSink,
    ExportFailedError,
    MissingExtraError,
)
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import load_settings
from monitoring.telemetry.exporters.receivers import (
    REQUEST_SPAN,
    TRACE_ID,
    AppInsightsReceiver,
    Sample,
)

IKEY = "5e3c2a1b-8d7f-4a6e-9b0c-1d2e3f4a5b6c"


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    # The exporter's OneSettings control plane has no constructor switch, only this variable.
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED", "true")


def _metric_name(envelope: dict[str, Any]) -> str | None:
    if envelope["data"]["baseType"] != "MetricData":
        return None
    name: str = envelope["data"]["baseData"]["metrics"][0]["name"]
    return name


def make_sink(receiver: AppInsightsReceiver) -> AzureMonitorSink:
    connection_string = f"InstrumentationKey={IKEY};IngestionEndpoint={receiver.url}/"
    return AzureMonitorSink(connection_string, timeout=5.0, service_version="9.9.9")


async def test_every_item_kind_arrives_as_its_envelope(
    appinsights_receiver: AppInsightsReceiver, sample: Sample, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sink = make_sink(appinsights_receiver)
    await sink.write(sample.batch)
    await sink.close()

    assert {path for path, _, _ in appinsights_receiver.requests} == {"/v2.1/track"}
    envelopes = appinsights_receiver.envelopes()
    # Besides our metric, the trace exporter describes the resource as a "_OTELRESOURCE_" metric.
    resource_metrics = [e for e in envelopes if _metric_name(e) == "_OTELRESOURCE_"]
    assert resource_metrics
    types = sorted(e["data"]["baseType"] for e in envelopes if e not in resource_metrics)
    assert types == [
        "EventData",
        "EventData",
        "ExceptionData",
        "MetricData",
        "RemoteDependencyData",
        "RemoteDependencyData",
        "RequestData",
    ]
    assert {e["iKey"] for e in envelopes} == {IKEY}

    (request,) = appinsights_receiver.of_type("RequestData")
    data = request["data"]["baseData"]
    assert data["responseCode"] == "500"
    assert data["success"] is False
    assert data["duration"] == "0.00:00:00.125"
    assert request["tags"]["ai.operation.id"] == TRACE_ID
    assert data["id"] == REQUEST_SPAN
    assert data["properties"]["RequestId"] == "req-1"
    assert request["tags"]["ai.cloud.role"] == "digitalme"

    dependencies = {
        d["data"]["baseData"]["name"]: d["data"]["baseData"]
        for d in appinsights_receiver.of_type("RemoteDependencyData")
    }
    assert dependencies["POST /v1/messages"]["type"] == "HTTP"
    assert dependencies["POST /v1/messages"]["resultCode"] == "200"
    assert dependencies["POST /v1/messages"]["target"].startswith("api.anthropic.com")

    events = {e["data"]["baseData"]["name"]: e for e in appinsights_receiver.of_type("EventData")}
    assert set(events) == {"Personality.Created", "Security.SqlInjection"}
    security = events["Security.SqlInjection"]["data"]["baseData"]["properties"]
    assert security["security.severity"] == "Critical"

    (exception,) = appinsights_receiver.of_type("ExceptionData")
    details = exception["data"]["baseData"]["exceptions"][0]
    assert details["typeName"] == "ValueError"
    assert details["message"] == "profile is broken"
    assert exception["tags"]["ai.operation.id"] == TRACE_ID

    (metric,) = [e for e in envelopes if _metric_name(e) == "Request.Duration"]
    point = metric["data"]["baseData"]["metrics"][0]
    assert point["name"] == "Request.Duration"
    assert point["count"] == 4
    assert point["value"] == sum(sample.values)
    assert (point["min"], point["max"]) == (4.0, 3000.0)

    # The instrumentation key goes to the ingestion only, never to our logs or reprs.
    assert IKEY not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert IKEY not in repr(sink)


async def test_refused_ingestion_raises_then_recovers(
    appinsights_receiver: AppInsightsReceiver, sample: Sample
) -> None:
    sink = make_sink(appinsights_receiver)
    appinsights_receiver.status = 503
    with pytest.raises(ExportFailedError) as failure:
        await sink.write(sample.batch)
    assert failure.value.signal == "traces"
    assert appinsights_receiver.refused == 1  # no retries inside the exporter, no disk

    appinsights_receiver.status = 200
    await sink.write(sample.batch)
    await sink.close()
    names = [
        e["data"]["baseData"].get("name", _metric_name(e)) for e in appinsights_receiver.envelopes()
    ]
    assert len([n for n in names if n != "_OTELRESOURCE_"]) == 7


async def test_through_monitoring_pipeline(appinsights_receiver: AppInsightsReceiver) -> None:
    clock = FakeClock()
    settings = load_settings(
        telemetry={"enable_adaptive_sampling": False},
        health={"prober_enabled": False},  # its status events would join the envelopes
    )
    sink = make_sink(appinsights_receiver)
    monitoring = Monitoring(settings, clock=clock, sinks=[sink], version="9.9.9", strict=True)
    await monitoring.start()
    token = current_context.set(TelemetryContext(trace_id=TRACE_ID, span_id=REQUEST_SPAN))
    try:
        monitoring.client.track_request(
            "GET /api/personality/{profile_id}", clock.time(), 0.05, 200, success=True
        )
    finally:
        current_context.reset(token)
    await monitoring.pipeline.flush()
    await monitoring.stop()

    (request,) = appinsights_receiver.of_type("RequestData")
    assert request["data"]["baseData"]["name"] == "GET /api/personality/{profile_id}"
    assert request["tags"]["ai.operation.id"] == TRACE_ID
    assert {_metric_name(e) for e in appinsights_receiver.of_type("MetricData")} > {
        "_OTELRESOURCE_"
    }


def test_missing_extra_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry.exporter", None)
    with pytest.raises(MissingExtraError) as missing:
        AzureMonitorSink(f"InstrumentationKey={IKEY}")
    assert missing.value.extra == "azure"
    assert IKEY not in str(missing.value)
