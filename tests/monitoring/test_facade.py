"""Monitoring.from_settings: the store is always a sink; exporters when configured; health."""

from __future__ import annotations

from pathlib import Path

from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.testing import InMemorySink, ScriptedCheck
from digitalme.settings import load_settings
from polling import eventually


def sink_names(monitoring: Monitoring) -> list[str]:
    return [worker.sink.name for worker in monitoring.pipeline.workers]


def test_default_is_the_embedded_store_only(tmp_path: Path) -> None:
    settings = load_settings(server={"data_dir": str(tmp_path)})
    monitoring = Monitoring.from_settings(settings)
    assert sink_names(monitoring) == ["store"]
    assert monitoring.store is not None
    assert monitoring.retention is not None


def test_exporters_from_connection_strings(tmp_path: Path) -> None:
    key = "00000000-0000-0000-0000-000000000001"
    settings = load_settings(
        server={"data_dir": str(tmp_path)},
        connection_strings={
            "otlp_endpoint": "http://127.0.0.1:4318",
            "application_insights": f"InstrumentationKey={key};"
            "IngestionEndpoint=http://127.0.0.1:9/",
        },
    )
    monitoring = Monitoring.from_settings(settings)
    assert sink_names(monitoring) == ["store", "otlp", "azure_monitor"]
    assert key not in repr(monitoring.pipeline.workers[2].sink)


def test_health_checks_registered_from_settings(tmp_path: Path) -> None:
    settings = load_settings(server={"data_dir": str(tmp_path)})
    assert Monitoring.from_settings(settings).health.registry.names() == [
        "telemetry-store",
        "process",
    ]
    configured = load_settings(
        server={"data_dir": str(tmp_path)},
        connection_strings={"redis": "redis://127.0.0.1:6379/0"},
        health={
            "telemetry_store_check": False,
            "process": {"enabled": False},
            "urls": [{"name": "status-page", "url": "https://status.example"}],
        },
    )
    assert Monitoring.from_settings(configured).health.registry.names() == [
        "redis",
        "status-page",
        "hub-backplane",  # the live hub shares its messages through that Redis
    ]


def test_routes_serve_health_and_metrics(tmp_path: Path) -> None:
    async def nobody(_: object) -> bool:
        return False

    monitoring = Monitoring(load_settings(server={"data_dir": str(tmp_path)}))
    paths = [getattr(route, "path", None) for route in monitoring.routes(nobody)]
    assert paths[:4] == ["/health", "/health/ready", "/health/live", "/metrics"]
    assert "/api/alerts/{alert_id}/resolve" in paths
    assert paths[-1] == "/api/notifications/test"


async def test_start_runs_the_prober_and_stop_ends_it(tmp_path: Path) -> None:
    settings = load_settings(
        server={"data_dir": str(tmp_path)}, health={"process": {"enabled": False}}
    )
    monitoring = Monitoring(settings, sinks=[InMemorySink()])
    check = ScriptedCheck("counted")
    monitoring.health.add(check)
    await monitoring.start()
    try:
        assert monitoring.health.prober.running
        await eventually(lambda: check.calls >= 1, timeout=10, what="a first round")
    finally:
        await monitoring.stop()
    assert not monitoring.health.prober.running
    assert check.closed
