"""TelemetryClient: every track_* method, bad input by rule, security severities and channel."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.telemetry.client import (
    CRITICAL_SECURITY_TOPIC,
    SECURITY_TOPIC,
    security_severity,
)
from digitalme.monitoring.telemetry.context import TelemetryContext, current_context
from digitalme.monitoring.telemetry.items import (
    DependencyItem,
    EventItem,
    ExceptionItem,
    RequestItem,
    SecurityEventItem,
    Severity,
)
from digitalme.monitoring.telemetry.sinks import SeriesKey
from digitalme.monitoring.testing import FakeClock, InMemorySink


def bucket_counts(monitoring: Monitoring, name: str) -> dict[tuple[tuple[str, str], ...], int]:
    now = monitoring.clock.time()
    return {
        tuple(sorted(dims.items())): bucket.count
        for dims, bucket in monitoring.aggregator.window(
            name, now - 3600, now + 60, group_by=_dims_of(monitoring, name)
        )
    }


def _dims_of(monitoring: Monitoring, name: str) -> list[str]:
    names: set[str] = set()
    for series in monitoring.registry.all():
        if series.key.name == name:
            names.update(k for k, _ in series.key.dimensions)
    return sorted(names)


async def test_metrics_are_aggregated_exactly(monitoring: Monitoring) -> None:
    client = monitoring.client
    for value in range(1, 101):
        client.track_metric("Queue.Depth", float(value), {"queue": "a", "region": "eu"})
    client.track_metric("Queue.Depth", 5, {"region": "eu", "queue": "a"})  # same series
    client.track_metric("Queue.Depth", 7, {"queue": "b", "region": "eu"})
    monitoring.pipeline.process(force=True)
    now = monitoring.clock.time()
    [(_, everything)] = monitoring.aggregator.window("Queue.Depth", now - 60, now + 60)
    assert everything.count == 102
    assert everything.sum == sum(range(1, 101)) + 5 + 7
    assert everything.min == 1
    assert everything.max == 100
    p95 = everything.quantile(0.95)
    assert p95 is not None
    assert abs(p95 - 95) / 95 <= 0.02
    by_queue = dict(
        (dims["queue"], bucket.count)
        for dims, bucket in monitoring.aggregator.window(
            "Queue.Depth", now - 60, now + 60, group_by=["queue"]
        )
    )
    assert by_queue == {"a": 101, "b": 1}


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("ok", math.nan, "rejected:not_finite"),
        ("ok", math.inf, "rejected:not_finite"),
        ("ok", -math.inf, "rejected:not_finite"),
        ("ok", "12", "rejected:not_a_number"),
        ("ok", None, "rejected:not_a_number"),
        ("", 1.0, "rejected:empty_name"),
        ("   ", 1.0, "rejected:empty_name"),
        ("x" * 201, 1.0, "rejected:name_too_long"),
    ],
)
async def test_bad_metric_input_is_counted_never_raised(
    monitoring: Monitoring, name: str, value: object, reason: str
) -> None:
    monitoring.client.track_metric(name, value)  # type: ignore[arg-type]
    assert monitoring.buffer.dropped[reason] == 1
    monitoring.pipeline.process(force=True)
    now = monitoring.clock.time()
    [(dims, bucket)] = monitoring.aggregator.window(
        "telemetry.dropped", now - 60, now + 60, group_by=["reason"]
    )
    assert dims == {"reason": reason}
    assert bucket.sum == 1


async def test_non_string_dimension_values_are_coerced(monitoring: Monitoring) -> None:
    client = monitoring.client
    client.track_metric("m", 1.0, {"code": 200, "ok": True, "tags": ["a", "b"]})
    client.track_metric("m", 1.0, {"code": 200, "ok": True, "tags": ["a", "b"]})
    monitoring.pipeline.process(force=True)
    [series] = [s for s in monitoring.registry.all() if s.key.name == "m"]
    assert series.key == SeriesKey("m", (("code", "200"), ("ok", "true"), ("tags", "['a', 'b']")))


async def test_cardinality_cap_overflows_into_other(clock: FakeClock, sink: InMemorySink) -> None:
    from digitalme.settings import load_settings

    settings = load_settings(telemetry={"max_series_per_metric": 3})
    stack = Monitoring(settings, clock=clock, sinks=[sink], strict=True)
    for user in range(10):
        stack.client.track_metric("per.user", 1.0, {"user": str(user)})
    stack.pipeline.process(force=True)
    keys = sorted(s.key.dims()["user"] for s in stack.registry.all() if s.key.name == "per.user")
    assert keys == ["0", "1", "2", "other"]
    now = clock.time()
    [(_, total)] = stack.aggregator.window("per.user", now - 60, now + 60)
    assert total.count == 10
    assert stack.registry.overflowed == {"per.user": 7}


async def test_items_capture_context_and_are_enriched(
    monitoring: Monitoring, sink: InMemorySink
) -> None:
    context = TelemetryContext(
        trace_id="a" * 32,
        span_id="b" * 16,
        request_id="req-1",
        client_ip="203.0.113.9",
        path="/x",
        method="GET",
    )
    token = current_context.set(context)
    try:
        client = monitoring.client
        client.track_request("GET /x", monitoring.clock.time(), 0.012, 200, True)
        client.track_dependency(
            "HTTP",
            "GET /v1",
            "https://api.example/v1",
            0.0,
            timedelta(milliseconds=30),
            True,
            target="api.example",
            result_code=200,
        )
        client.track_event("Checkout", {"Environment": "caller wins", "n": 3}, {"total": 9.5})
        try:
            raise ValueError("bad thing with password=hunter2")
        except ValueError as exc:
            client.track_exception(exc)
    finally:
        current_context.reset(token)
    await monitoring.pipeline.flush()
    [request] = sink.of_kind(RequestItem)
    assert request.duration_ms == pytest.approx(12.0)
    assert request.properties["OperationId"] == "a" * 32
    assert request.properties["RequestId"] == "req-1"
    assert request.properties["ClientIP"] == "203.0.113.9"
    assert request.properties["Version"] == "9.9.9"
    [dependency] = sink.of_kind(DependencyItem)
    assert dependency.duration_ms == pytest.approx(30.0)
    assert dependency.result_code == "200"
    [event] = sink.of_kind(EventItem)
    assert event.properties["Environment"] == "caller wins"
    assert event.properties["n"] == "3"
    assert event.measurements == {"total": 9.5}
    [exception] = sink.of_kind(ExceptionItem)
    assert exception.type == "ValueError"
    assert "hunter2" not in exception.message
    assert "hunter2" not in exception.stack
    assert "Traceback" in exception.stack


@pytest.mark.parametrize(
    ("event_type", "severity"),
    [
        ("RateLimit", Severity.MEDIUM),
        ("SqlInjection", Severity.CRITICAL),
        ("XssScript", Severity.HIGH),
        ("CommandInjection", Severity.CRITICAL),
        ("PathTraversal", Severity.HIGH),
        ("UnauthorizedAccess", Severity.HIGH),
        ("AccountLockout", Severity.MEDIUM),
        ("LoginFailed", Severity.LOW),
        ("Anything", Severity.LOW),
    ],
)
def test_security_severities_are_the_plans(event_type: str, severity: Severity) -> None:
    assert security_severity(event_type) is severity


async def test_critical_security_events_are_exceptions_and_published_at_once(
    monitoring: Monitoring, sink: InMemorySink
) -> None:
    critical = monitoring.bus.subscribe(CRITICAL_SECURITY_TOPIC)
    every = monitoring.bus.subscribe(SECURITY_TOPIC)
    client = monitoring.client
    client.track_security_event("SqlInjection", "refused ' OR 1=1", client_ip="198.51.100.1")
    client.track_security_event("XssScript", "refused script tag", user_id=7)
    message = critical.queue.get_nowait()
    assert isinstance(message.payload, SecurityEventItem)
    assert message.payload.event_type == "SqlInjection"
    assert critical.queue.empty()
    assert every.queue.qsize() == 2
    await monitoring.pipeline.flush()
    events = sink.of_kind(SecurityEventItem)
    assert [(e.event_type, e.severity) for e in events] == [
        ("SqlInjection", Severity.CRITICAL),
        ("XssScript", Severity.HIGH),
    ]
    assert events[1].user_id == "7"
    [exception] = sink.of_kind(ExceptionItem)
    assert exception.severity is Severity.CRITICAL
    assert exception.type == "SecurityException"


async def test_user_activity_and_personality_operation(
    monitoring: Monitoring, sink: InMemorySink
) -> None:
    client = monitoring.client
    client.track_user_activity(42, "Login")
    client.track_personality_operation("Generate", 1.5, True, 42, {"ProfileId": "3"})
    await monitoring.pipeline.flush()
    names = [e.name for e in sink.of_kind(EventItem)]
    assert names == ["UserActivity", "PersonalityOperation"]
    assert sink.of_kind(EventItem)[1].properties["Duration"] == "1500.00"
    series = {s.key for s in monitoring.registry.all()}
    assert SeriesKey("UserActivity.Count", (("Activity", "Login"),)) in series
    assert SeriesKey("PersonalityOperation.Duration.Generate") in series
    assert SeriesKey("PersonalityOperation.Success.Generate") in series
