"""URL checks from settings, against a real HTTP server on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from digitalme.monitoring.health import HealthStatus
from digitalme.monitoring.health.builtin import add_builtin_checks
from digitalme.monitoring.health.service import HealthMonitor
from digitalme.monitoring.telemetry.redaction import Redactor
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import load_settings
from servers import find_free_port


class _Handler(BaseHTTPRequestHandler):
    """``GET /status/<code>`` answers that code; ``GET /slow`` answers 200 after a second."""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.0)
            code = 200
        else:
            code = int(self.path.rsplit("/", 1)[1])
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_url_checks_from_settings(upstream: str, clock: FakeClock) -> None:
    settings = load_settings(
        health={
            "process": {"enabled": False},
            "urls": [
                {"name": "ok", "url": f"{upstream}/status/200"},
                {"name": "moved", "url": f"{upstream}/status/301", "expected_status": 301},
                {
                    "name": "broken",
                    "url": f"{upstream}/status/500",
                    "failure_status": "Unhealthy",
                    "tags": ["ready"],
                },
                {"name": "slow", "url": f"{upstream}/slow", "timeout": 0.2},
                {"name": "gone", "url": f"http://user:pw-secret@127.0.0.1:{find_free_port()}/"},
            ],
        }
    )
    monitor = HealthMonitor(settings.health, clock=clock, redactor=Redactor())
    add_builtin_checks(monitor, settings, store=None, clock=clock)
    try:
        report = await monitor.report()
        ready = await monitor.report(ready=True)
    finally:
        await monitor.stop()
    results = {entry.name: entry.result for entry in report.entries}
    assert set(results) == {"ok", "moved", "broken", "slow", "gone"}
    assert results["ok"].status is HealthStatus.HEALTHY
    assert results["ok"].data == {"status_code": 200, "expected_status": 200}
    assert results["moved"].status is HealthStatus.HEALTHY
    assert results["broken"].status is HealthStatus.UNHEALTHY
    assert results["broken"].description == "answered HTTP 500"
    assert results["slow"].status is HealthStatus.DEGRADED
    assert results["gone"].status is HealthStatus.DEGRADED
    assert results["gone"].description == "request failed"
    assert "pw-secret" not in repr(report)
    # URL checks are tagged external by default, so readiness keeps only "broken".
    assert [entry.name for entry in ready.entries] == ["broken"]
