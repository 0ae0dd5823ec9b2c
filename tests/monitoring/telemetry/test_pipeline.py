"""The pipeline: priorities when full, sampling weights, sink outages, drain on shutdown."""

from __future__ import annotations

from typing import Any

import pytest

from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.telemetry.buffer import ItemBuffer
from digitalme.monitoring.telemetry.context import (
    TelemetryContext,
    context_from_traceparent,
    current_context,
    score,
)
from digitalme.monitoring.telemetry.items import (
    EventItem,
    ExceptionItem,
    RequestItem,
    SecurityEventItem,
    Severity,
)
from digitalme.monitoring.telemetry.sampling import Sampler, ladder
from digitalme.monitoring.testing import FakeClock, InMemorySink
from digitalme.settings import load_settings


def event(n: int) -> EventItem:
    return EventItem(time=float(n), name=f"e{n}")


def exception(n: int) -> ExceptionItem:
    return ExceptionItem(time=float(n), type="E", message=str(n))


def test_full_buffer_drops_lowest_priority_first() -> None:
    buffer = ItemBuffer(capacity=3)
    for n in range(3):
        buffer.submit(event(n))
    buffer.submit(exception(10))  # evicts the oldest event
    buffer.submit(exception(11))
    buffer.submit(exception(12))
    buffer.submit(exception(13))  # nothing lower left: the new one is dropped
    buffer.submit(event(99))
    assert [item.time for item in buffer.drain()] == [10, 11, 12]
    assert buffer.dropped == {"evicted_for_priority": 3, "buffer_full": 2}


def test_ladder_gives_whole_weights() -> None:
    assert ladder(100) == 100
    assert ladder(50) == 50
    assert ladder(40) == pytest.approx(100 / 3)
    assert ladder(0.0001) == pytest.approx(0.1)


def test_fixed_sampling_keeps_operations_whole_and_weights_are_unbiased() -> None:
    sampler = Sampler(25)
    kept_weight = 0.0
    total = 4000
    for n in range(total):
        context = TelemetryContext(trace_id=f"{n:032x}", span_id="1" * 16)
        request = RequestItem(
            time=0, context=context, name="GET /", duration_ms=1, status_code=200, success=True
        )
        dependency = RequestItem(
            time=0, context=context, name="GET /", duration_ms=1, status_code=200, success=True
        )
        kept = sampler.keep(request, 0.0)
        assert sampler.keep(dependency, 0.0) is kept  # one decision per operation
        if kept:
            assert request.weight == 4.0
            kept_weight += request.weight
    assert abs(kept_weight - total) / total < 0.1
    assert 0 <= score("anything") < 100


def test_an_operation_started_here_is_sampled_as_one_without_drawing_its_trace_id() -> None:
    sampler = Sampler(25)
    kept = 0
    total = 4000
    for _ in range(total):
        context = TelemetryContext()
        first = sampler.weight(context, 0.0)
        assert sampler.weight(context, 0.0) == first  # every item of the operation alike
        assert first in (0.0, 4.0)
        kept += first > 0
    assert context._trace_id is None  # the position did not need the id
    assert abs(kept / total - 0.25) < 0.05


def test_a_continued_trace_is_sampled_by_its_trace_id_on_every_instance() -> None:
    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    one, other = context_from_traceparent(header), context_from_traceparent(header)
    assert one.sampling_position == other.sampling_position == score(one.trace_id)


def test_exceptions_and_security_events_are_never_sampled() -> None:
    sampler = Sampler(0.1)
    for n in range(200):
        context = TelemetryContext(trace_id=f"{n:032x}", span_id="1" * 16)
        assert sampler.keep(ExceptionItem(time=0, context=context, type="E", message=""), 0)
        item = SecurityEventItem(
            time=0, context=context, event_type="RateLimit", severity=Severity.MEDIUM, details=""
        )
        assert sampler.keep(item, 0)


def test_adaptive_sampling_decreases_fast_and_increases_slowly() -> None:
    sampler = Sampler(
        100, adaptive=True, target_per_second=10, evaluation_interval=10, increase_cooldown=60
    )
    now = 0.0

    def feed(per_second: int, seconds: int) -> None:
        nonlocal now
        for _ in range(seconds):
            for n in range(per_second):
                sampler.keep(
                    EventItem(
                        time=now,
                        name="e",
                        context=TelemetryContext(trace_id=f"{n:032x}", span_id="1" * 16),
                    ),
                    now,
                )
            now += 1

    feed(1, 1)
    feed(100, 11)  # 10x the target: cut at once to 10 %
    assert sampler.percentage == pytest.approx(10)
    feed(1, 11)  # load gone, but increases wait for the cooldown
    assert sampler.percentage == pytest.approx(10)
    feed(1, 60)
    assert sampler.percentage == pytest.approx(20)  # then at most doubles per step
    feed(1, 200)
    assert sampler.percentage == 100


def test_adaptive_sampling_cuts_a_burst_within_a_second_or_two() -> None:
    # Target 200/s, evaluated every 15 s: a service that starts at 5,000 items/s has seen
    # its 15 s budget (3,000 items) after 0.6 s, and is cut once a full second has passed.
    sampler = Sampler(100, adaptive=True, target_per_second=200, evaluation_interval=15)
    for n in range(10_000):
        now = n / 5000
        sampler.keep(
            EventItem(
                time=now, name="e", context=TelemetryContext(trace_id=f"{n:032x}", span_id="1" * 16)
            ),
            now,
        )
        if now < 1.0:
            assert sampler.percentage == 100
    assert 3.5 < sampler.percentage <= 4  # about 200 / 5000, on a rung of the ladder


def test_adaptive_sampling_keeps_a_quiet_service_whole_until_the_interval_ends() -> None:
    sampler = Sampler(100, adaptive=True, target_per_second=200, evaluation_interval=15)
    for n in range(14 * 100):  # 100/s for 14 s: under budget, no early evaluation
        sampler.keep(EventItem(time=n / 100, name="e"), n / 100)
    assert sampler.percentage == 100


@pytest.mark.parametrize(
    "telemetry_overrides", [{"sampling_percentage": 20, "enable_adaptive_sampling": False}]
)
async def test_counts_from_metrics_are_exact_even_when_items_are_sampled(
    monitoring: Monitoring, sink: InMemorySink, telemetry_overrides: dict[str, Any]
) -> None:
    for n in range(500):
        token = current_context.set(TelemetryContext(trace_id=f"{n:032x}", span_id="1" * 16))
        monitoring.client.track_request(
            "GET /x", monitoring.clock.time(), 0.01, 500 if n < 25 else 200, n >= 25
        )
        current_context.reset(token)
    # The decision is made at capture: items sampled out never reach the buffer.
    buffered = len(monitoring.buffer)
    assert buffered + monitoring.client.sampler.sampled_out == 500
    await monitoring.pipeline.flush()
    now = monitoring.clock.time()
    windows = dict(
        (dims["success"], bucket.count)
        for dims, bucket in monitoring.aggregator.window(
            "http.server.duration", now - 60, now + 60, group_by=["success"]
        )
    )
    assert windows == {"true": 475, "false": 25}
    stored = sink.of_kind(RequestItem)
    assert 0 < len(stored) == buffered < 500
    assert all(item.weight == 5.0 for item in stored)


async def test_a_failing_sink_loses_nothing_and_recovers(
    monitoring: Monitoring, sink: InMemorySink
) -> None:
    sink.failing = True
    for n in range(10):
        monitoring.client.track_event(f"e{n}")
    monitoring.pipeline.process(force=True)
    assert not await monitoring.pipeline.workers[0].flush(timeout=0.2)
    assert monitoring.pipeline.workers[0].failing
    sink.failing = False
    assert await monitoring.pipeline.workers[0].flush(timeout=5)
    assert [e.name for e in sink.of_kind(EventItem)] == [f"e{n}" for n in range(10)]
    assert not monitoring.pipeline.workers[0].failing


async def test_stop_drains_everything(clock: FakeClock) -> None:
    sink = InMemorySink()
    settings = load_settings(health={"prober_enabled": False})  # exactly our 1000 events
    stack = Monitoring(settings, clock=clock, sinks=[sink], strict=True)
    await stack.start()
    for n in range(1000):
        stack.client.track_event(f"e{n}")
        stack.client.track_metric("m", float(n))
    await stack.stop()
    assert len(sink.of_kind(EventItem)) == 1000
    assert sink.closed
    [bucket] = [b for (key, _), b in sink.buckets.items() if key.name == "m"]
    assert bucket.count == 1000


async def test_enrichment_adds_only_redacted_values(clock: FakeClock) -> None:
    # Global properties are redacted once, at start; values a client controls (user
    # agent, path, request id) each time; the caller's own properties still win.
    settings = load_settings(
        telemetry={"enable_adaptive_sampling": False},
        custom_telemetry={"global_properties": {"Team": "core", "DeployToken": "s3cr3t-deploy"}},
    )
    sink = InMemorySink()
    stack = Monitoring(settings, clock=clock, sinks=[sink], strict=True)
    await stack.start()
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl"
    context = TelemetryContext(
        request_id="req-7",
        user_agent=f"curl/8 Authorization: Bearer {jwt}",
        path="/reset?token=abc123def456",
    )
    token = current_context.set(context)
    try:
        stack.client.track_request("GET /reset", clock.time(), 0.01, 200, True)
        stack.client.track_event("Custom", {"Team": "caller wins", "password": "hunter2"})
    finally:
        current_context.reset(token)
    await stack.stop()
    [request] = sink.of_kind(RequestItem)
    [event] = [e for e in sink.of_kind(EventItem) if e.name == "Custom"]
    for item in (request, event):
        text = repr(item.properties)
        for secret in ("s3cr3t-deploy", jwt, "abc123def456", "hunter2"):
            assert secret not in text
        assert item.properties["DeployToken"] == "[REDACTED]"
        assert item.properties["RequestId"] == "req-7"
        assert item.properties["OperationId"] == context.trace_id
    assert request.properties["Team"] == "core"
    assert event.properties["Team"] == "caller wins"
    assert event.properties["password"] == "[REDACTED]"
    assert str(request.properties["UserAgent"]).startswith("curl/8")
