"""The public status page in headless Chromium against the real program (``digitalme serve``).

The server probes every 0.2 s, with a URL check of a dead local port named
``billing-gateway``; the page is not cached (``cache_seconds: 0``) so a reload
shows the latest heartbeats. Nobody signs in. Each test checks that the page
logged no console error (a style the CSP refused would be one) and that nothing
of the failing check but its name reaches the browser.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from browser import ConsoleTab
from serve_process import ServeProcess
from servers import find_free_port

CHECK = "billing-gateway"
WAIT = 20.0  # seconds: a bound for waiting for the prober's heartbeats, not a timing claim
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
DOWN_COLOUR = "rgb(224, 49, 49)"  # --down in status.css


@pytest.fixture(scope="module")
def dead_port() -> int:
    return find_free_port()  # nothing listens there: the check's GET is refused


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dead_port: int) -> Iterator[ServeProcess]:
    directory: Path = tmp_path_factory.mktemp("status-page")
    config = directory / "config.yaml"
    config.write_text(
        f"""
health:
  probe_interval: 0.2
  urls:
    - name: {CHECK}
      url: "http://127.0.0.1:{dead_port}/charge"
      timeout: 1
      failure_status: Unhealthy
uptime:
  # rounds every 0.2 s can run late on a busy machine: only a stopped prober is unknown here
  unknown_after_intervals: 50
  status_page:
    cache_seconds: 0
security:
  rate_limit_per_ip: "100000/minute"
  rate_limit_per_user: "100000/minute"
"""
    )
    process = ServeProcess(directory, {"DIGITALME_CONFIG": str(config)}).start()
    yield process
    process.stop()


class StatusTab(ConsoleTab):
    """A browser tab on the status page, recording what its console reports."""

    def open_once_down(self) -> None:
        """Open ``/status``, reloading until today's bar of the check shows its outage
        (its second heartbeat: the first covers no time)."""
        today = self.page.locator(f".component[data-component='{CHECK}'] .day.d-down")
        deadline = time.monotonic() + WAIT
        while True:
            response = self.page.goto(f"{self.base_url}/status")
            assert response is not None
            assert response.status == 200
            if today.count():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"no outage bar of {CHECK} within {WAIT:g} s")
            self.page.wait_for_timeout(200)


def tab(browser: Browser, server: ServeProcess, viewport: dict[str, int]) -> StatusTab:
    return StatusTab(browser.new_context(viewport=viewport).new_page(), server.base_url)


def assert_nothing_internal(page: Page, dead_port: int) -> None:
    for text in (page.inner_text("body"), page.content()):
        for secret in ("127.0.0.1", str(dead_port), "/charge", "http://", "refused", "Connect"):
            assert secret not in text


def test_the_status_page_shows_components_and_bars_without_sign_in(
    browser: Browser, server: ServeProcess, dead_port: int
) -> None:
    status = tab(browser, server, LAPTOP)
    status.open_once_down()
    page = status.page

    component = page.locator(f".component[data-component='{CHECK}']")
    expect(component).to_be_visible()
    expect(component.locator(".state")).to_have_text("Outage")
    assert page.locator("#overall").get_attribute("data-status") in (
        "partial_outage",
        "major_outage",
    )
    expect(page.locator("#incidents")).to_contain_text(CHECK)
    # every shown component has 90 bars, all laid out, today's last
    components = page.locator(".component")
    assert components.count() >= 2  # the check and the built-in ones
    for index in range(components.count()):
        expect(components.nth(index).locator(".day")).to_have_count(90)
    bars = component.locator(".day")
    expect(bars.first).to_be_visible()
    expect(bars.last).to_be_visible()
    assert bars.last.get_attribute("class") == "day d-down"
    # the stylesheet loaded under the page's CSP
    assert bars.last.evaluate("bar => getComputedStyle(bar).backgroundColor") == DOWN_COLOUR
    assert_nothing_internal(page, dead_port)
    assert status.errors == []
    page.context.close()


def test_on_a_phone_the_last_30_days_fit_the_screen(
    browser: Browser, server: ServeProcess, dead_port: int
) -> None:
    status = tab(browser, server, PHONE)
    status.open_once_down()
    page = status.page
    bars = page.locator(f".component[data-component='{CHECK}'] .day")
    expect(bars.first).to_be_hidden()
    expect(bars.nth(59)).to_be_hidden()
    expect(bars.nth(60)).to_be_visible()
    expect(bars.last).to_be_visible()
    # no sideways scrolling
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    assert_nothing_internal(page, dead_port)
    assert status.errors == []
    page.context.close()


def test_the_api_and_badge_answer_without_sign_in(server: ServeProcess, dead_port: int) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        document = client.get("/api/status")
        badge = client.get("/api/status/badge.svg")
    assert document.status_code == 200
    names = {c["name"]: c["status"] for c in document.json()["components"]}
    assert names[CHECK] == "major_outage"
    assert "overall" not in names
    assert badge.status_code == 200
    assert badge.headers["content-type"] == "image/svg+xml"
    assert "<title>uptime: " in badge.text
    for text in (document.text, badge.text):
        for secret in ("127.0.0.1", str(dead_port), "/charge", "refused"):
            assert secret not in text
