"""The one error shape, request ids, and the test-only slow endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from digitalme.app import create_app
from digitalme.settings import load_settings


async def test_every_response_has_a_request_id_and_keeps_a_valid_incoming_one(
    client: httpx.AsyncClient,
) -> None:
    generated = await client.get("/api/personality")
    assert len(generated.headers["x-request-id"]) == 32
    assert generated.json()["request_id"] == generated.headers["x-request-id"]

    kept = await client.get("/api/personality", headers={"X-Request-ID": "abc-123.def"})
    assert kept.headers["x-request-id"] == "abc-123.def"
    assert kept.json()["request_id"] == "abc-123.def"

    replaced = await client.get("/api/personality", headers={"X-Request-ID": "bad id\twith space"})
    assert replaced.headers["x-request-id"] != "bad id\twith space"


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nope")
    assert missing.status_code == 404
    assert set(missing.json()) == {"error", "message", "request_id"}
    wrong_method = await client.delete("/api/auth/login")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


async def test_unhandled_exception_is_a_json_500_without_stack_trace(app: FastAPI) -> None:
    async def explode() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app.add_api_route("/explode", explode)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/explode")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error"
    assert body["request_id"] == response.headers["x-request-id"]
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_slow_endpoint_sleeps_and_validates(client: httpx.AsyncClient) -> None:
    ok = await client.post("/test/slow-endpoint?seconds=0.05")
    assert ok.status_code == 200
    assert ok.json() == {"slept_seconds": 0.05}
    capped = await client.post("/test/slow-endpoint?seconds=31")
    assert capped.status_code == 422
    assert "query.seconds" in capped.json()["message"]


def test_slow_endpoint_is_absent_in_production(tmp_path: Path) -> None:
    overrides: dict[str, Any] = {
        "environment": "Production",
        "server": {"data_dir": str(tmp_path)},
        "auth": {"jwt_secret": "x" * 40},
    }
    app = create_app(load_settings(**overrides))
    paths = set(app.openapi()["paths"])
    assert "/test/slow-endpoint" not in paths
    assert "/api/personality" in paths
