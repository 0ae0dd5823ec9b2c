"""The dashboard's Uptime and Error budget panels and its deployment markers, in headless Chromium.

One real server for the module (``digitalme serve``, embedded SQLite) probing
every 0.5 s, so that heartbeats exist by the time the page asks; its uptime,
SLO and deployment APIs answer as they do in production. The panels' less
common states (a burning tier, an open incident, maintenance, a spent budget)
cannot be produced quickly by a real service, so one test answers the uptime
APIs from the browser's side (``page.route``) with the API's shapes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Route, expect

from host.test_dashboard_page import ADMIN_PASSWORD, LAPTOP, Dashboard, admin_headers
from serve_process import ServeProcess

CONFIG = """
health:
  probe_interval: 0.5
dashboard:
  snapshot_interval: 0.5
security:
  rate_limit_per_ip: "100000/minute"
  rate_limit_per_user: "100000/minute"
"""
CHARTS = ("#chart-rate", "#chart-latency", "#chart-errors")
NONE = "\u2013"  # an en dash: the page's "no data"
TIMES = "\u00d7"  # the multiplication sign of burn rates
HEARTBEATS_WITHIN = 15.0  # seconds; a bound for waiting


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    directory: Path = tmp_path_factory.mktemp("dashboard-uptime")
    config = directory / "config.yaml"
    config.write_text(CONFIG)
    env = {"DIGITALME_CONFIG": str(config), "DIGITALME_ADMIN_PASSWORD": ADMIN_PASSWORD}
    process = ServeProcess(directory, env).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def headers(server: ServeProcess) -> dict[str, str]:
    return admin_headers(server.base_url)


@pytest.fixture
def dashboard(browser: Browser, server: ServeProcess) -> Iterator[Dashboard]:
    context = browser.new_context(viewport=LAPTOP)
    yield Dashboard(context.new_page(), server.base_url)
    context.close()


def overall_uptime(server: ServeProcess, headers: dict[str, str]) -> float:
    """The overall component's 24 h uptime once the prober's heartbeats give one."""
    deadline = time.monotonic() + HEARTBEATS_WITHIN
    while time.monotonic() < deadline:
        body = httpx.get(f"{server.base_url}/api/uptime", headers=headers).json()
        for entry in body["components"]:
            if entry["component"] == "overall" and entry["windows"]["24h"]["uptime_percent"]:
                return float(entry["windows"]["24h"]["uptime_percent"])
        time.sleep(0.2)
    raise AssertionError(f"no overall uptime within {HEARTBEATS_WITHIN:g} s")


def deploy(server: ServeProcess, headers: dict[str, str], version: str, **extra: str) -> None:
    created = httpx.post(
        f"{server.base_url}/api/deployments",
        json={"version": version, **extra},
        headers=headers,
    )
    assert created.status_code == 201, created.text


def test_the_panels_show_uptime_and_the_error_budget_and_charts_mark_deployments(
    dashboard: Dashboard, server: ServeProcess, headers: dict[str, str]
) -> None:
    overall_uptime(server, headers)
    deploy(server, headers, "v1.4.2", description="the uptime panel")
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    deploy(server, headers, "v1.4.1", at=three_hours_ago.isoformat())

    dashboard.sign_in()
    dashboard.signed_in()
    page = dashboard.page

    # Uptime: overall first, with its status and a percentage per window
    rows = page.locator("#uptime-rows tr")
    expect(rows.first).to_have_attribute("data-component", "overall")
    overall = page.locator("#uptime-rows tr[data-component='overall']")
    expect(overall.locator(".status")).to_have_text(re.compile(r"^(up|degraded)$"))
    expect(overall.locator("td.uptime")).to_have_count(3)
    expect(overall.locator("td.uptime").first).to_have_text(re.compile(r"^\d{1,3}(\.\d{3})?%$"))
    expect(page.locator("#uptime-rows tr[data-component='database']")).to_have_count(1)
    expect(page.locator("#incidents-summary")).to_have_text("None in the last 30 days.")

    # Error budget: 99.5% over 30 days is 216 minutes, nothing burning
    budget = page.locator("#budget-figures")
    expect(budget).to_contain_text("99.5% of overall over 30 days")
    expect(budget).to_contain_text("216 min")
    expect(page.locator("#budget-bar")).to_have_attribute("data-level", "ok")
    expect(page.locator("#tier-rows tr")).to_have_count(4)
    expect(page.locator("#tier-rows tr[data-burning='true']")).to_have_count(0)

    # Deployments: the last hour's one on each chart, with its version
    for chart in CHARTS:
        expect(page.locator(chart)).to_have_attribute("data-deployments", "1")
    marker = page.locator("#chart-rate .marker")
    expect(marker).to_have_attribute("data-label", "v1.4.2")
    expect(marker).to_have_attribute(
        "title", re.compile(r"^v1\.4\.2 deployed by .+: the uptime panel$")
    )

    # a wider window fetches (and draws) the older one as well
    page.select_option("#window", "6h")
    for chart in CHARTS:
        expect(page.locator(chart)).to_have_attribute("data-deployments", "2")
    assert dashboard.errors == []


def fulfil(route: Route, body: dict[str, Any]) -> None:
    route.fulfill(status=200, content_type="application/json", body=json.dumps(body))


def window(uptime: float | None) -> dict[str, Any]:
    return {
        "uptime_percent": uptime,
        "down_seconds": 61.0,
        "unknown_seconds": 0.0,
        "maintenance_seconds": 0.0,
        "response_ms": {"avg": 3.5, "max": 9.0},
    }


INCIDENT = {
    "id": "i-open",
    "component": "database",
    "source": "inside",
    "cause": "down",
    "started_at": "2026-01-01T10:00:00+00:00",
    "ended_at": None,
    "open": True,
    "duration_seconds": 125.0,
    "failing": ["database"],
    "description": "",
}
UPTIME = {
    "source": "inside",
    "window_seconds": 86400.0,
    "components": [
        {
            "component": name,
            "status": status,
            "last_heartbeat_at": "2026-01-01T10:02:05+00:00",
            "interval_seconds": 10.0,
            "in_maintenance": name == "claude-api",
            "open_incident": INCIDENT if name == "database" else None,
            "windows": {w: window(uptime) for w in ("1h", "24h", "7d", "30d", "90d", "365d")},
            "window": window(uptime),
        }
        for name, status, uptime in [
            ("claude-api", "degraded", None),
            ("database", "down", 99.99996),
            ("overall", "down", 99.5),
        ]
    ],
}
INCIDENTS = {
    "window_seconds": 30 * 86400.0,
    "count": 7,
    "mttr_seconds": 300.0,
    "mtbf_seconds": None,
    "incidents": [INCIDENT]
    + [
        {**INCIDENT, "id": f"i-{n}", "open": False, "ended_at": "2026-01-01T09:00:00+00:00"}
        for n in range(6)
    ],
}
TIER = {
    "factor": 14.4,
    "severity": "Critical",
    "long_window_seconds": 3600.0,
    "short_window_seconds": 300.0,
}
SLO = {
    "target_percent": 99.9,
    "window_days": 30.0,
    "component": "overall",
    "source": "inside",
    "sli_percent": 99.5,
    "error_budget": {
        "total_minutes": 43.2,
        "consumed_minutes": 216.0,
        "remaining_minutes": -172.8,
        "remaining_percent": -400.0,
    },
    "current_burn_rate": 5.0,
    "tiers": [
        {
            **TIER,
            "name": "page_fast",
            "long_burn_rate": 20.0,
            "short_burn_rate": 30.0,
            "burning": True,
        },
        {
            **TIER,
            "name": "ticket_slow",
            "long_burn_rate": 0.5,
            "short_burn_rate": 0.2,
            "burning": False,
        },
    ],
}


def test_incidents_maintenance_and_a_burning_budget_read_as_such(dashboard: Dashboard) -> None:
    page = dashboard.page
    page.route("**/api/uptime?*", lambda route: fulfil(route, UPTIME))
    page.route("**/api/uptime/incidents?*", lambda route: fulfil(route, INCIDENTS))
    page.route("**/api/slo", lambda route: fulfil(route, SLO))
    dashboard.sign_in()
    dashboard.signed_in()

    rows = page.locator("#uptime-rows tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_have_attribute("data-component", "overall")
    database = page.locator("#uptime-rows tr[data-component='database']")
    expect(database.locator(".status")).to_have_attribute("data-status", "down")
    # never rounded up to 100%
    expect(database.locator("td.uptime").first).to_have_text("99.999%")
    expect(database.locator(".tag[data-kind='incident']")).to_contain_text("incident (down) since")
    expect(database.locator(".tag[data-kind='incident']")).to_contain_text("2m 5s")
    claude = page.locator("#uptime-rows tr[data-component='claude-api']")
    expect(claude.locator(".tag[data-kind='maintenance']")).to_have_text("in maintenance")
    expect(claude.locator("td.uptime").first).to_have_text(NONE)

    expect(page.locator("#incidents-summary")).to_have_text("7 in 30 days · MTTR 5m 0s")
    expect(page.locator("#incident-list li")).to_have_count(5)
    expect(page.locator("#incident-list li").first).to_contain_text("ongoing")

    budget = page.locator("#budget-figures")
    expect(budget).to_contain_text("43.2 min")
    expect(budget).to_contain_text("-172.8 min (-400%)")
    expect(budget).to_contain_text(f"5.00{TIMES}")
    expect(page.locator("#budget-bar")).to_have_attribute("data-level", "out")
    expect(page.locator("#budget-bar")).to_have_attribute("aria-valuenow", "0")
    burning = page.locator("#tier-rows tr[data-burning='true']")
    expect(burning).to_have_count(1)
    expect(burning).to_contain_text("page_fast")
    expect(burning).to_contain_text(f"14.4{TIMES}")
    expect(burning).to_contain_text(f"20.00{TIMES} over 1 h")
    expect(burning).to_contain_text(f"30.00{TIMES} over 5 min")
    assert dashboard.errors == []
