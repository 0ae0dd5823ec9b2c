"""Personality profiles through the HTTP API, including the plan's own curl commands."""

from __future__ import annotations

import httpx

from accounts import MakeAccount
from digitalme.host.security_events import SecurityEvent, SecurityEventType
from digitalme.settings import Role


async def test_plans_post_works_for_an_authenticated_user_and_401_without(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    payload = '{"name":"Test","data":{"test":"value"}}'
    headers = {"Content-Type": "application/json"}
    anonymous = await client.post("/api/personality", content=payload, headers=headers)
    assert anonymous.status_code == 401

    created = await client.post(
        "/api/personality", content=payload, headers={**headers, **account.headers}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "Test"
    assert body["data"] == {"test": "value"}
    assert body["owner_id"] == account.id
    assert body["created_at"] == body["updated_at"]


async def test_plans_xss_post_is_refused_with_an_event(
    client: httpx.AsyncClient, make_account: MakeAccount, recorded_events: list[SecurityEvent]
) -> None:
    account = await make_account()
    response = await client.post(
        "/api/personality",
        content='{"name":"<script>alert(\\"xss\\")</script>"}',
        headers={"Content-Type": "application/json", **account.headers},
    )
    assert response.status_code == 400
    assert "XssScript" in response.json()["message"]
    assert "<script>" not in response.text
    assert [e.type for e in recorded_events] == [SecurityEventType.XSS_SCRIPT]
    listed = await client.get("/api/personality", headers=account.headers)
    assert listed.json() == []


async def test_crud_and_ownership(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    alice = await make_account()
    bob = await make_account()
    admin = await make_account(Role.ADMIN)
    made = await client.post(
        "/api/personality", json={"name": "Alice", "data": {"tone": "warm"}}, headers=alice.headers
    )
    profile_id = made.json()["id"]
    await client.post("/api/personality", json={"name": "Bob"}, headers=bob.headers)

    own = await client.get("/api/personality", headers=alice.headers)
    assert [p["name"] for p in own.json()] == ["Alice"]
    everyone = await client.get("/api/personality", headers=admin.headers)
    assert sorted(p["name"] for p in everyone.json()) == ["Alice", "Bob"]

    assert (
        await client.get(f"/api/personality/{profile_id}", headers=bob.headers)
    ).status_code == 404
    assert (
        await client.get(f"/api/personality/{profile_id}", headers=admin.headers)
    ).status_code == 200

    patched = await client.patch(
        f"/api/personality/{profile_id}", json={"name": "Alice 2"}, headers=alice.headers
    )
    assert patched.status_code == 200
    assert patched.json()["name"] == "Alice 2"
    assert patched.json()["data"] == {"tone": "warm"}

    replaced = await client.put(
        f"/api/personality/{profile_id}",
        json={"name": "Alice 3", "data": {"tone": "dry"}},
        headers=alice.headers,
    )
    assert replaced.json()["data"] == {"tone": "dry"}

    stolen = await client.delete(f"/api/personality/{profile_id}", headers=bob.headers)
    assert stolen.status_code == 404
    deleted = await client.delete(f"/api/personality/{profile_id}", headers=alice.headers)
    assert deleted.status_code == 204
    assert (
        await client.get(f"/api/personality/{profile_id}", headers=alice.headers)
    ).status_code == 404


async def test_validation_names_the_field(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    cases = [
        ({"name": ""}, "body.name"),
        ({"name": "x" * 201}, "body.name"),
        ({"name": "ok", "data": [1, 2]}, "body.data"),
        ({"name": "ok", "data": {"blob": "x" * (64 * 1024)}}, "body.data"),
        ({"name": "ok", "unexpected": 1}, "body.unexpected"),
        ({}, "body.name"),
    ]
    for payload, field in cases:
        response = await client.post("/api/personality", json=payload, headers=account.headers)
        assert response.status_code == 422, payload
        body = response.json()
        assert body["error"] == "validation_error"
        assert field in body["message"], (payload, body)
        assert set(body) == {"error", "message", "request_id"}
    bad_id = await client.get("/api/personality/abc", headers=account.headers)
    assert bad_id.status_code == 422
    assert "path.profile_id" in bad_id.json()["message"]


async def test_malformed_json_is_a_422_not_a_500(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    response = await client.post(
        "/api/personality",
        content="{not json",
        headers={"Content-Type": "application/json", **account.headers},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_pagination_is_bounded(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    account = await make_account()
    for i in range(3):
        await client.post("/api/personality", json={"name": f"p{i}"}, headers=account.headers)
    page = await client.get("/api/personality?limit=2&offset=1", headers=account.headers)
    assert [p["name"] for p in page.json()] == ["p1", "p2"]
    too_many = await client.get("/api/personality?limit=1000", headers=account.headers)
    assert too_many.status_code == 422
    assert "query.limit" in too_many.json()["message"]
