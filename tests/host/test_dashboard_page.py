"""The web dashboard in headless Chromium against the real program (``digitalme serve``).

One server for the module (embedded SQLite, default rules; rate limits raised so
that the tests' own traffic is never refused, and the hub's snapshot period
lowered to 0.5 s so that "within 2 s" leaves room on a busy machine: the
default 2 s period is measured in ``benchmarks/bench_hub_latency.py``). Each
test has its own browser context (its own ``sessionStorage``) and ends by
checking that the page logged no console error and raised nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from browser import ConsoleTab
from serve_process import ServeProcess

ADMIN = "admin@localhost"
ADMIN_PASSWORD = "a long admin password"
USER = "viewer@example.com"
USER_PASSWORD = "a viewer's password"
CONFIG = """
dashboard:
  snapshot_interval: 0.5
security:
  rate_limit_per_ip: "100000/minute"
  rate_limit_per_user: "100000/minute"
"""
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def start_server(directory: Path, port: int | None = None) -> ServeProcess:
    config = directory / "config.yaml"
    config.write_text(CONFIG)
    env = {"DIGITALME_CONFIG": str(config), "DIGITALME_ADMIN_PASSWORD": ADMIN_PASSWORD}
    return ServeProcess(directory, env, port=port).start()


def admin_headers(base_url: str) -> dict[str, str]:
    login = httpx.post(
        f"{base_url}/api/auth/login", json={"email": ADMIN, "password": ADMIN_PASSWORD}
    )
    login.raise_for_status()
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    process = start_server(tmp_path_factory.mktemp("dashboard"))
    created = httpx.post(
        f"{process.base_url}/api/users",
        json={"email": USER, "password": USER_PASSWORD, "role": "User"},
        headers=admin_headers(process.base_url),
    )
    assert created.status_code == 201, created.text
    yield process
    process.stop()


class Dashboard(ConsoleTab):
    """A browser tab on the dashboard, recording what its console reports."""

    def open(self) -> None:
        self.page.goto(f"{self.base_url}/dashboard")

    def sign_in(self, email: str = ADMIN, password: str = ADMIN_PASSWORD) -> None:
        self.open()
        self.page.fill("#email", email)
        self.page.fill("#password", password)
        self.page.click("#sign-in-button")

    def signed_in(self) -> None:
        """Signed in, the hub connected and the first snapshot shown."""
        expect(self.page.locator("#app")).to_be_visible()
        expect(self.page.locator("#connection")).to_have_text("live")
        expect(self.page.locator("#tile-requests")).to_have_text(re.compile(r"^[\d,]+$"))

    def requests_shown(self) -> int:
        return int((self.page.text_content("#tile-requests") or "").replace(",", ""))

    def requests_reach(self, count: int, *, timeout: float) -> None:
        """Wait until the requests tile shows at least ``count`` (``timeout`` in ms).

        A function, not an expression: the page's CSP forbids the eval Playwright
        would use for a bare expression."""
        self.page.wait_for_function(
            "(n) => Number(document.getElementById('tile-requests')"
            ".textContent.replace(/,/g, '')) >= n",
            arg=count,
            timeout=timeout,
        )


@pytest.fixture
def dashboard(browser: Browser, server: ServeProcess) -> Iterator[Dashboard]:
    context = browser.new_context(viewport=LAPTOP)
    yield Dashboard(context.new_page(), server.base_url)
    context.close()


def test_an_admin_signs_in_and_sees_traffic_within_2_s(
    dashboard: Dashboard, server: ServeProcess
) -> None:
    dashboard.sign_in()
    dashboard.signed_in()
    page = dashboard.page
    expect(page.locator("#who")).to_have_text("admin (SuperAdmin)")
    expect(page.locator("#overall")).to_have_text(re.compile(r"health: (Healthy|Degraded)"))
    before = dashboard.requests_shown()

    with httpx.Client(base_url=server.base_url) as client:
        for _ in range(25):
            assert client.get("/health/live").status_code == 200
    # "within 2 s": a bound for waiting (the snapshot period is 0.5 s here)
    dashboard.requests_reach(before + 25, timeout=2000)

    # the sections are the metrics API's figures, the health table the checks'
    expect(page.locator("#health-rows tr[data-check='database'] .status")).to_have_text("Healthy")
    expect(page.locator("#performance-figures")).to_contain_text("Apdex")
    expect(page.locator("#system-figures")).to_contain_text("Memory (RSS)")
    expect(page.locator("#business-figures")).to_contain_text("Profiles")
    # the charting library loaded and drew the three charts
    expect(page.locator(".plot canvas")).to_have_count(3)
    assert dashboard.errors == []


def test_an_alert_appears_live_and_is_resolved_from_the_page(
    dashboard: Dashboard, server: ServeProcess
) -> None:
    dashboard.sign_in()
    dashboard.signed_in()
    page = dashboard.page

    # A SQL injection: a Critical security event (shown live) and a Critical alert.
    attack = httpx.get(f"{server.base_url}/api/personality", params={"q": "1' OR '1'='1"})
    assert attack.status_code == 400
    event = page.locator("#security-list li", has_text="SqlInjection").first
    expect(event).to_be_visible()
    expect(event).to_contain_text("Critical")
    alert = page.locator("#alert-list li", has_text="SqlInjection").first
    expect(alert).to_be_visible()
    alert_id = alert.get_attribute("data-alert")
    assert alert_id

    alert.get_by_role("button", name="Resolve").click()
    expect(page.locator(f"#alert-list li[data-alert='{alert_id}']")).to_have_count(0)
    detail = httpx.get(
        f"{server.base_url}/api/alerts/{alert_id}", headers=admin_headers(server.base_url)
    )
    assert detail.json()["alert"]["state"] == "resolved"
    assert detail.json()["alert"]["resolved_by"] == ADMIN
    assert dashboard.errors == []


def test_a_non_admin_is_refused(dashboard: Dashboard) -> None:
    dashboard.sign_in(USER, USER_PASSWORD)
    error = dashboard.page.locator("#sign-in-error")
    expect(error).to_have_text(re.compile("not an administrator"))
    expect(dashboard.page.locator("#app")).to_be_hidden()
    # nothing of the session is kept: a reload shows the sign-in form again
    dashboard.open()
    expect(dashboard.page.locator("#sign-in-form")).to_be_visible()
    assert dashboard.errors == []


def test_a_wrong_password_is_refused(dashboard: Dashboard) -> None:
    dashboard.sign_in(ADMIN, "not the password")
    expect(dashboard.page.locator("#sign-in-error")).to_have_text("Wrong email or password.")
    expect(dashboard.page.locator("#app")).to_be_hidden()
    # the failed login is answered 401: the browser reports the failed resource, nothing else
    assert all("401" in error for error in dashboard.errors), dashboard.errors


def test_the_session_survives_a_reload_and_ends_at_sign_out(dashboard: Dashboard) -> None:
    dashboard.sign_in()
    dashboard.signed_in()
    dashboard.page.reload()
    dashboard.signed_in()
    dashboard.page.click("#sign-out")
    expect(dashboard.page.locator("#sign-in-form")).to_be_visible()
    dashboard.page.reload()
    expect(dashboard.page.locator("#sign-in-form")).to_be_visible()
    assert dashboard.errors == []


def test_a_phone_screen_shows_everything_without_sideways_scrolling(
    browser: Browser, server: ServeProcess
) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        dashboard = Dashboard(context.new_page(), server.base_url)
        dashboard.sign_in()
        dashboard.signed_in()
        page = dashboard.page
        expect(page.locator(".plot canvas")).to_have_count(3)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        for tile in page.locator(".tile").all():
            box = tile.bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= PHONE["width"]
        assert dashboard.errors == []
    finally:
        context.close()


def test_the_page_reconnects_by_itself_after_a_restart(browser: Browser, tmp_path: Path) -> None:
    first = start_server(tmp_path)
    context = browser.new_context(viewport=LAPTOP)
    try:
        dashboard = Dashboard(context.new_page(), first.base_url)
        dashboard.sign_in()
        dashboard.signed_in()
        first.stop()
        expect(dashboard.page.locator("#connection")).to_have_text("reconnecting…")

        second = start_server(tmp_path, port=first.port)  # same data, same address
        try:
            # the same session (the signing key is kept in the data directory)
            expect(dashboard.page.locator("#connection")).to_have_text("live", timeout=20_000)
            # a snapshot of the new process (its request count starts again from 0)
            updated = dashboard.page.locator("#updated")
            expect(updated).not_to_have_text(updated.text_content() or "")
            before = dashboard.requests_shown()
            with httpx.Client(base_url=second.base_url) as client:
                for _ in range(5):
                    client.get("/health/live")
            dashboard.requests_reach(before + 5, timeout=5000)
        finally:
            second.stop()
    finally:
        context.close()
    # while the server was down the browser reported the refused connections, nothing else
    unexpected = [
        e for e in dashboard.errors if "ERR_CONNECTION_REFUSED" not in e and "WebSocket" not in e
    ]
    assert unexpected == []
