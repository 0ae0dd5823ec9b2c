"""Prometheus text exposition of the live aggregates (prometheus_client's format).

Every series becomes one cumulative histogram (``_bucket``/``_count``/``_sum``)
named ``digitalme_<metric>`` with its dimensions as labels; the pipeline's own
health is exported as counters and gauges. Nothing is observed on the request
path for this: the totals are kept by the aggregator off the path.
"""

from __future__ import annotations

import hmac
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest, start_http_server
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from digitalme.monitoring.telemetry.aggregation import HISTOGRAM_BOUNDS, Aggregator
from digitalme.monitoring.telemetry.pipeline import TelemetryPipeline
from digitalme.settings import MetricsEndpointSettings

PREFIX = "digitalme_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_BOUND_LABELS = (*(repr(float(bound)) for bound in HISTOGRAM_BOUNDS), "+Inf")


def metric_name(name: str) -> str:
    """``http.server.duration`` -> ``digitalme_http_server_duration``."""
    cleaned = _INVALID.sub("_", name).strip("_").lower()
    return PREFIX + re.sub(r"_+", "_", cleaned)


def label_name(name: str) -> str:
    cleaned = _INVALID.sub("_", name)
    return f"_{cleaned}" if cleaned[:1].isdigit() or not cleaned else cleaned


class TelemetryCollector(Collector):
    """Collects the aggregator's totals and the pipeline's self-metrics at scrape time."""

    def __init__(self, aggregator: Aggregator, pipeline: TelemetryPipeline) -> None:
        self.aggregator = aggregator
        self.pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
        families: dict[str, HistogramMetricFamily] = {}
        label_sets: dict[str, list[str]] = defaultdict(list)
        # A snapshot: a scrape on the separate port runs in another thread.
        snapshot = list(self.aggregator.totals.items())
        for key, totals in sorted(snapshot, key=lambda kv: kv[0].name):
            name = metric_name(key.name)
            labels = [label_name(k) for k, _ in key.dimensions]
            family = families.get(name)
            if family is None:
                family = families[name] = HistogramMetricFamily(
                    name, f"{key.name} (recorded values)", labels=labels
                )
                label_sets[name] = labels
            elif labels != label_sets[name]:
                continue  # Prometheus needs one label set per family; overflow series share it.
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip((*HISTOGRAM_BOUNDS, float("inf")), totals.buckets, strict=True):
                cumulative += count
                buckets.append(
                    ("+Inf" if bound == float("inf") else repr(float(bound)), cumulative)
                )
            family.add_metric([v for _, v in key.dimensions], buckets, totals.sum)
        yield from families.values()

        dropped = CounterMetricFamily(
            PREFIX + "telemetry_dropped", "Telemetry items dropped, by reason", labels=["reason"]
        )
        totals_by_reason = dict(self.pipeline.buffer.dropped)
        for worker in self.pipeline.workers:
            for reason, count in worker.dropped.items():
                totals_by_reason[reason] = totals_by_reason.get(reason, 0) + count
        for reason, count in sorted(totals_by_reason.items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield GaugeMetricFamily(
            PREFIX + "telemetry_buffer_items",
            "Items waiting in the buffer",
            value=len(self.pipeline.buffer),
        )
        yield GaugeMetricFamily(
            PREFIX + "telemetry_series",
            "Metric series tracked",
            value=len(self.aggregator.registry),
        )
        written = CounterMetricFamily(
            PREFIX + "telemetry_sink_written_items", "Items written, by sink", labels=["sink"]
        )
        failing = GaugeMetricFamily(
            PREFIX + "telemetry_sink_failing", "1 while a sink is failing", labels=["sink"]
        )
        for worker in self.pipeline.workers:
            written.add_metric([worker.sink.name], worker.written_items)
            failing.add_metric([worker.sink.name], 1.0 if worker.failing else 0.0)
        yield written
        yield failing


def exposition(collector: TelemetryCollector) -> bytes:
    """The text format for one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text: bytes = generate_latest(registry)
    return text


Authorize = Callable[[Request], Awaitable[bool]]


def metrics_endpoint(
    collector: TelemetryCollector, settings: MetricsEndpointSettings, authorize: Authorize
) -> Callable[[Request], Awaitable[Response]]:
    """The ``/metrics`` handler: open, or for a scrape token or whoever ``authorize`` accepts."""
    token = settings.scrape_token.get_secret_value() if settings.scrape_token else None

    async def endpoint(request: Request) -> Response:
        if not settings.public:
            scheme, _, presented = request.headers.get("authorization", "").partition(" ")
            by_token = (
                token is not None
                and scheme.lower() == "bearer"
                and hmac.compare_digest(presented.strip().encode(), token.encode())
            )
            if not by_token and not await authorize(request):
                return JSONResponse(
                    {
                        "error": "unauthorized",
                        "message": "metrics need an admin token or the scrape token",
                        "request_id": request.scope.get("state", {}).get("request_id", ""),
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return Response(exposition(collector), media_type=CONTENT_TYPE)

    return endpoint


def serve_on_port(collector: TelemetryCollector, port: int, host: str) -> Callable[[], None]:
    """Serve the exposition on its own port (no auth: bind it to a private interface)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
