"""Monitoring.from_settings: the store is always a sink; exporters when configured."""

from __future__ import annotations

from pathlib import Path

from digitalme.monitoring.facade import Monitoring
from digitalme.settings import load_settings


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
