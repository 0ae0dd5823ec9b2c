"""Login, tokens, lockout, API keys and role guards, through the HTTP API."""

from __future__ import annotations

import base64
import json

import httpx
import jwt

from accounts import JWT_SECRET, PASSWORD, MakeAccount
from digitalme.host.security_events import SecurityEvent, SecurityEventType
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import Role


def types_of(events: list[SecurityEvent]) -> list[SecurityEventType]:
    return [event.type for event in events]


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def test_login_returns_a_token_that_authenticates(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account(Role.USER)
    response = await login(client, account.email.upper(), PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["user"]["email"] == account.email
    claims = jwt.decode(
        body["access_token"],
        JWT_SECRET,
        algorithms=["HS256"],
        audience="digitalme-api",
        options={"verify_exp": False},  # minted on the fake clock
    )
    assert claims["sub"] == str(account.id)
    assert claims["role"] == "User"
    assert claims["iss"] == "digitalme"

    me = await client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["id"] == account.id
    assert me.json()["last_login_date"] is not None


async def test_wrong_password_and_unknown_email_look_the_same(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    recorded_events: list[SecurityEvent],
) -> None:
    account = await make_account()
    wrong = await login(client, account.email, "not the password")
    unknown = await login(client, "nobody@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"] == unknown.json()["error"] == "invalid_credentials"
    assert wrong.json()["message"] == unknown.json()["message"]
    assert types_of(recorded_events) == [SecurityEventType.LOGIN_FAILED] * 2


async def test_lockout_after_threshold_then_423_even_with_right_password(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    clock: FakeClock,
    recorded_events: list[SecurityEvent],
) -> None:
    account = await make_account()
    for _ in range(5):
        assert (await login(client, account.email, "wrong password")).status_code == 401
    assert SecurityEventType.ACCOUNT_LOCKOUT in types_of(recorded_events)

    locked_right = await login(client, account.email, PASSWORD)
    locked_wrong = await login(client, account.email, "wrong password")
    assert locked_right.status_code == locked_wrong.status_code == 423
    assert locked_right.json() == {
        **locked_wrong.json(),
        "request_id": locked_right.json()["request_id"],
    }
    assert int(locked_right.headers["retry-after"]) > 0

    clock.advance(15 * 60 + 1)
    assert (await login(client, account.email, PASSWORD)).status_code == 200


async def test_successful_login_resets_the_failure_count(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    for _ in range(4):
        await login(client, account.email, "wrong password")
    assert (await login(client, account.email, PASSWORD)).status_code == 200
    for _ in range(4):
        await login(client, account.email, "wrong password")
    assert (await login(client, account.email, PASSWORD)).status_code == 200


def forge(claims: dict[str, object], header: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


async def test_bad_tokens_get_401(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    clock: FakeClock,
    recorded_events: list[SecurityEvent],
) -> None:
    account = await make_account()
    now = int(clock.now().timestamp())
    claims = {
        "sub": str(account.id),
        "role": "SuperAdmin",
        "iss": "digitalme",
        "aud": "digitalme-api",
        "iat": now,
        "exp": now + 600,
    }
    tampered = account.token[:-4] + ("AAAA" if not account.token.endswith("AAAA") else "BBBB")
    cases = {
        "alg_none": forge(claims, {"alg": "none", "typ": "JWT"}),
        "wrong_key": jwt.encode(claims, "another-secret-that-is-also-long-enough-000", "HS256"),
        "wrong_audience": jwt.encode({**claims, "aud": "other"}, JWT_SECRET, "HS256"),
        "wrong_issuer": jwt.encode({**claims, "iss": "other"}, JWT_SECRET, "HS256"),
        "tampered": tampered,
        "garbage": "not-a-jwt",
    }
    for name, token in cases.items():
        response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.json()["error"] == "invalid_token", name
    assert types_of(recorded_events) == [SecurityEventType.UNAUTHORIZED_ACCESS] * len(cases)

    clock.advance(3601)
    expired = await client.get("/api/auth/me", headers=account.headers)
    assert expired.status_code == 401
    assert expired.json()["error"] == "token_expired"
    assert recorded_events[-1].type is SecurityEventType.TOKEN_EXPIRED


async def test_missing_credentials_get_401_with_event(
    client: httpx.AsyncClient, recorded_events: list[SecurityEvent]
) -> None:
    response = await client.get("/api/personality")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert types_of(recorded_events) == [SecurityEventType.AUTHENTICATION_REQUIRED]


async def test_admin_routes_refuse_users_with_403(
    client: httpx.AsyncClient, make_account: MakeAccount, recorded_events: list[SecurityEvent]
) -> None:
    user = await make_account(Role.USER)
    admin = await make_account(Role.ADMIN)
    refused = await client.get("/api/users", headers=user.headers)
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    assert recorded_events[-1].type is SecurityEventType.FORBIDDEN
    assert recorded_events[-1].user_id == user.id
    listed = await client.get("/api/users", headers=admin.headers)
    assert listed.status_code == 200
    assert {u["email"] for u in listed.json()} == {user.email, admin.email}


async def test_only_super_admin_creates_admins(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(Role.ADMIN)
    root = await make_account(Role.SUPER_ADMIN)
    body = {"email": "new@example.com", "password": "long enough pw", "role": "Admin"}
    assert (await client.post("/api/users", json=body, headers=admin.headers)).status_code == 403
    created = await client.post("/api/users", json=body, headers=root.headers)
    assert created.status_code == 201
    assert created.json()["role"] == "Admin"
    again = await client.post("/api/users", json=body, headers=root.headers)
    assert again.status_code == 409
    assert "email" in again.json()["message"]


async def test_role_change_takes_effect_for_existing_tokens(
    app: object, client: httpx.AsyncClient, make_account: MakeAccount, clock: FakeClock
) -> None:
    from fastapi import FastAPI
    from sqlalchemy import update

    from digitalme.host.models import User

    assert isinstance(app, FastAPI)
    admin = await make_account(Role.ADMIN)
    assert (await client.get("/api/users", headers=admin.headers)).status_code == 200
    async with app.state.host.database.sessions() as session:
        await session.execute(update(User).where(User.id == admin.id).values(role="User"))
        await session.commit()
    assert (await client.get("/api/users", headers=admin.headers)).status_code == 403


async def test_api_key_lifecycle(
    client: httpx.AsyncClient, make_account: MakeAccount, recorded_events: list[SecurityEvent]
) -> None:
    admin = await make_account(Role.ADMIN)
    user = await make_account(Role.USER)
    created = await client.post(
        f"/api/users/{user.id}/api-keys", json={"name": "ci robot"}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    prefix = created.json()["prefix"]
    assert key.startswith(f"dm_{prefix}_")

    for _ in range(3):
        me = await client.get("/api/auth/me", headers={"X-API-Key": key})
        assert me.status_code == 200
        assert me.json()["id"] == user.id

    listed = await client.get(f"/api/users/{user.id}/api-keys", headers=admin.headers)
    [row] = listed.json()
    assert row["use_count"] == 3
    assert row["last_used_at"] is not None
    assert "key" not in row
    assert key not in listed.text

    revoked = await client.delete(f"/api/api-keys/{row['id']}", headers=admin.headers)
    assert revoked.status_code == 204
    refused = await client.get("/api/auth/me", headers={"X-API-Key": key})
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_api_key"
    assert recorded_events[-1].type is SecurityEventType.UNAUTHORIZED_ACCESS
    assert recorded_events[-1].properties == {"api_key_prefix": prefix}

    bogus = await client.get("/api/auth/me", headers={"X-API-Key": f"dm_{prefix}_wrongsecret"})
    assert bogus.status_code == 401
    malformed = await client.get("/api/auth/me", headers={"X-API-Key": "nonsense"})
    assert malformed.status_code == 401


async def test_api_key_routes_need_admin(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    user = await make_account(Role.USER)
    response = await client.post(
        f"/api/users/{user.id}/api-keys", json={"name": "mine"}, headers=user.headers
    )
    assert response.status_code == 403
    missing = await make_account(Role.ADMIN)
    response = await client.post(
        "/api/users/99999/api-keys", json={"name": "x"}, headers=missing.headers
    )
    assert response.status_code == 404
    assert "user_id" in response.json()["message"]
