"""`digitalme serve` as a real process: first admin, login, the plan's POST, JSON logs."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serve_process import ServeProcess

ADMIN_PASSWORD = "a long admin password"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path, {"DIGITALME_ADMIN_PASSWORD": ADMIN_PASSWORD}) as server:
        yield server


def test_serve_creates_the_admin_and_serves_the_plans_flow(
    served: ServeProcess, tmp_path: Path
) -> None:
    with httpx.Client(base_url=served.base_url, timeout=5) as http:
        login = http.post(
            "/api/auth/login", json={"email": "admin@localhost", "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        assert login.json()["user"]["role"] == "SuperAdmin"
        created = http.post(
            "/api/personality",
            content='{"name":"Test","data":{"test":"value"}}',
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201
        request_id = created.headers["x-request-id"]
        refused = http.post("/api/personality", json={"name": "<script>alert(1)</script>"})
        assert refused.status_code == 400

    output = served.stop()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see it.
    assert served.process is not None
    assert served.process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete." in output
    assert (tmp_path / "var" / "digitalme.db").is_file()
    assert (tmp_path / "var" / "jwt-secret").stat().st_mode & 0o077 == 0

    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(r.get("request_id") == request_id for r in records)
    security = [r for r in records if r.get("event") == "security_event"]
    assert {r["event_type"] for r in security} >= {"XssScript"}
    assert ADMIN_PASSWORD not in output
    assert token not in output

    # Everything recorded before SIGTERM was drained into the telemetry store.
    with sqlite3.connect(tmp_path / "var" / "telemetry.db") as db:
        names = {row[0] for row in db.execute("SELECT name FROM telemetry_requests")}
        security = {
            row[0] for row in db.execute("SELECT event_type FROM telemetry_security_events")
        }
    assert {"POST /api/auth/login", "POST /api/personality"} <= names
    assert "XssScript" in security


def test_an_open_live_stream_does_not_hold_the_shutdown(tmp_path: Path) -> None:
    """SIGTERM with a live SSE stream open: the server still stops by itself."""
    env = {"DIGITALME_ADMIN_PASSWORD": ADMIN_PASSWORD, "DIGITALME_SERVER__SHUTDOWN_TIMEOUT": "1"}
    with ServeProcess(tmp_path, env) as server:
        with httpx.Client(base_url=server.base_url, timeout=5) as http:
            login = http.post(
                "/api/auth/login", json={"email": "admin@localhost", "password": ADMIN_PASSWORD}
            )
            token = login.json()["access_token"]
            with http.stream(
                "GET", "/hubs/metrics/events", headers={"Authorization": f"Bearer {token}"}
            ) as stream:
                assert stream.status_code == 200
                assert next(stream.iter_lines()).startswith("event: ")
                server.stop()  # SIGTERM with the stream still open; waits up to 15 s
        assert server.process is not None
        # Ended by itself (0 or SIGTERM re-raised), not killed after the 15 s wait.
        assert server.process.returncode in (0, -signal.SIGTERM)
