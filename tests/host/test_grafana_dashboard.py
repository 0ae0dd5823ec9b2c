"""The Grafana dashboard in docs/ parses and names only series that /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts import PASSWORD, Account, MakeAccount
from digitalme.monitoring.facade import Monitoring
from digitalme.settings import Role

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "digitalme.json"
SERIES = re.compile(r"\bdigitalme_[a-zA-Z0-9_]+")


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"] == "DigitalMe"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
    assert all(SERIES.search(expr) for expr in expressions(dashboard))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_series_it_names_is_exposed_by_metrics(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    monitoring: Monitoring,
) -> None:
    admin: Account = await make_account(Role.ADMIN)
    # Traffic that records every kind of series the dashboard charts.
    await client.get("/api/personality", headers=admin.headers)  # request + SQL dependency
    await client.get("/api/personality", params={"q": "' OR '1'='1"})  # security event
    login = await client.post("/api/auth/login", json={"email": admin.email, "password": PASSWORD})
    assert login.status_code == 200
    monitoring.performance.record_personality_generation(1.5, True, "claude", admin.id)
    await monitoring.health.prober.probe()  # health check availability
    assert monitoring.system is not None
    monitoring.system.sample()  # process metrics
    monitoring.pipeline.process(force=True)

    scraped = await client.get("/metrics", headers=admin.headers)
    assert scraped.status_code == 200
    families = list(text_string_to_metric_families(scraped.text))
    exposed = {sample.name for family in families for sample in family.samples}
    # A counter with nothing counted yet (no drops) is declared without samples.
    exposed |= {f"{family.name}_total" for family in families if family.type == "counter"}
    named = {
        name
        for expr in expressions(json.loads(DASHBOARD.read_text()))
        for name in SERIES.findall(expr)
    }
    assert named - exposed == set()
