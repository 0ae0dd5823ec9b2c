"""The dashboard page's routes: the HTML with its configuration and headers, and its files."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from structlog.testing import capture_logs

from digitalme.monitoring.dashboard.page import CHARTS_FILE, STATIC_DIR, page_routes


def client_for(directory: Path = STATIC_DIR) -> httpx.AsyncClient:
    app = Starlette(
        routes=page_routes(
            sign_in_path="/api/auth/login", snapshot_interval=2.0, directory=directory
        )
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
def pages(tmp_path: Path) -> Path:
    """The page's files, with a stand-in for the charting library (which `make vendor` installs)."""
    copy = tmp_path / "static"
    shutil.copytree(STATIC_DIR, copy, ignore=shutil.ignore_patterns("vendor"))
    (copy / "vendor").mkdir()
    (copy / CHARTS_FILE).write_text("window.uPlot = function () {};\n")
    (copy / "vendor" / ".installed").write_text("")
    return copy


async def test_the_page_carries_its_configuration_and_a_strict_policy(pages: Path) -> None:
    async with client_for(pages) as client:
        response = await client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    body = response.text
    assert 'data-sign-in="/api/auth/login"' in body
    assert 'data-hub="/hubs/metrics"' in body
    assert 'data-snapshot-interval="2"' in body
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe" not in policy  # no inline script, no eval
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    # everything the page loads is served from here: no CDN
    assert "https://" not in body
    assert "http://" not in body


async def test_files_are_served_with_a_type_and_revalidated_by_etag(pages: Path) -> None:
    async with client_for(pages) as client:
        script = await client.get("/dashboard/static/js/main.js")
        assert script.status_code == 200
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert script.headers["cache-control"] == "no-cache"
        again = await client.get(
            "/dashboard/static/js/main.js", headers={"If-None-Match": script.headers["etag"]}
        )
        assert again.status_code == 304
        assert again.content == b""
        style = await client.get("/dashboard/static/dashboard.css")
        assert style.headers["content-type"] == "text/css; charset=utf-8"
        charts = await client.get(f"/dashboard/static/{CHARTS_FILE}")
        assert charts.text == "window.uPlot = function () {};\n"


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/static/nope.js",
        "/dashboard/static/index.html",  # the template is served only as /dashboard
        "/dashboard/static/vendor/.installed",  # dotfiles are not served
        "/dashboard/static/../page.py",
        "/dashboard/static/%2e%2e/page.py",
        "/dashboard/static//etc/passwd",
    ],
)
async def test_nothing_else_is_served(pages: Path, path: str) -> None:
    async with client_for(pages) as client:
        response = await client.get(path)
    assert response.status_code == 404


async def test_a_missing_charting_library_is_logged_and_the_page_still_served(
    pages: Path,
) -> None:
    shutil.rmtree(pages / "vendor")
    with capture_logs() as logs:
        client = client_for(pages)
    [warning] = [log for log in logs if log["event"] == "dashboard_charts_unavailable"]
    assert "make vendor" in warning["fix"]
    async with client:
        assert (await client.get("/dashboard")).status_code == 200
        assert (await client.get(f"/dashboard/static/{CHARTS_FILE}")).status_code == 404


def test_the_installed_page_has_its_charting_library() -> None:
    """`make test` runs `make vendor` first: the real files are there, from npm."""
    assert (STATIC_DIR / CHARTS_FILE).stat().st_size > 10_000
    assert (STATIC_DIR / "vendor" / "uPlot.min.css").is_file()
