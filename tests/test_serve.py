"""`digitalme serve` as a real process: first admin, login, the plan's POST, JSON logs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servers import find_free_port

ADMIN_PASSWORD = "a long admin password"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = find_free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIGITALME")}
    environment["DIGITALME_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    process = subprocess.Popen(
        [sys.executable, "-m", "digitalme", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/api/personality", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, "server exited early"
                time.sleep(0.1)
        else:
            pytest.fail("server did not start within 30 s")
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_serve_creates_the_admin_and_serves_the_plans_flow(
    served: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    base, process = served
    with httpx.Client(base_url=base, timeout=5) as http:
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

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see it.
    assert process.returncode in (0, -signal.SIGTERM)
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
