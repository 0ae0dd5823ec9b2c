"""Prometheus exposition: valid text format, cumulative histograms, self-metrics, own port."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.telemetry.prometheus import exposition, label_name, metric_name
from digitalme.monitoring.testing import FakeClock, InMemorySink
from digitalme.settings import load_settings
from servers import find_free_port


def test_names_are_sanitised() -> None:
    assert metric_name("http.server.duration") == "digitalme_http_server_duration"
    assert metric_name("Database.Query.Count") == "digitalme_database_query_count"
    assert label_name("status-code") == "status_code"
    assert label_name("2xx") == "_2xx"


async def test_exposition_parses_and_counts_are_cumulative(monitoring: Monitoring) -> None:
    for duration_ms in (3, 30, 300, 3000):
        monitoring.client.track_request(
            "GET /x", monitoring.clock.time(), duration_ms / 1000, 200, True
        )
    monitoring.client.track_metric("m", float("nan"))
    monitoring.pipeline.process(force=True)
    families = {
        f.name: f for f in text_string_to_metric_families(exposition(monitoring.collector).decode())
    }
    histogram = families["digitalme_http_server_duration"]
    samples = {(s.name, s.labels.get("le")): s.value for s in histogram.samples}
    assert samples[("digitalme_http_server_duration_count", None)] == 4
    assert samples[("digitalme_http_server_duration_sum", None)] == 3333
    assert samples[("digitalme_http_server_duration_bucket", "5.0")] == 1
    assert samples[("digitalme_http_server_duration_bucket", "50.0")] == 2
    assert samples[("digitalme_http_server_duration_bucket", "500.0")] == 3
    assert samples[("digitalme_http_server_duration_bucket", "+Inf")] == 4
    dropped = families["digitalme_telemetry_dropped"]
    assert [
        (s.labels["reason"], s.value) for s in dropped.samples if s.name.endswith("_total")
    ] == [("rejected:not_finite", 1)]


async def test_metrics_on_their_own_port() -> None:
    port = find_free_port()
    settings = load_settings(metrics={"port": port})
    stack = Monitoring(settings, clock=FakeClock(), sinks=[InMemorySink()], strict=True)
    # Only the health endpoints: /metrics is served on its own port.
    paths = [getattr(route, "path", None) for route in stack.routes(authorize=_never)]
    assert "/metrics" not in paths
    await stack.start()
    try:
        stack.client.track_metric("queue.depth", 4.0)
        stack.pipeline.process(force=True)
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        assert "digitalme_queue_depth_count 1.0" in response.text
    finally:
        await stack.stop()


async def _never(_: object) -> bool:
    return False
