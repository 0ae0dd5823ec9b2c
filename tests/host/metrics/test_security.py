"""``GET /api/metrics/security`` through the real app: known traffic, exact figures.

The traffic comes from distinct client addresses (the guard's rate limit counts
per IP, and the top offending IPs are checked). The scenario runs with the real
SQLite telemetry store (``source: store``) and without a store (``source:
live``): the per-type counts and the metrics are the same, and the figures that
need single events (unique IPs, top IPs) are null without a store.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from accounts import PASSWORD, Account, MakeAccount
from digitalme.monitoring.dashboard.figures import Figures
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.telemetry.sinks import SeriesKey
from digitalme.monitoring.testing import FakeClock, InMemorySink
from digitalme.settings import Role
from host.metrics.times import iso

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SECURITY = "/api/metrics/security"

RATE_A = "203.0.113.5"  # one SQL injection, then rate limited three times
RATE_B = "203.0.113.6"  # rate limited once
THREATS = "198.51.100.7"  # one SQL injection, one XSS
LOGINS = "192.0.2.20"  # failed logins, a lockout, successful logins
KEYS = "192.0.2.30"  # API keys: valid, revoked, forged, malformed
REFUSED = "192.0.2.40"  # no credentials, a forged token, a user on the admin API
SETUP = "192.0.2.10"  # the admin creating keys: no security event
SQL_INJECTION = {"q": "' OR '1'='1"}


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {
        "connection_strings": {"telemetry_store": f"sqlite+aiosqlite:///{tmp_path}/telemetry.db"},
        "security": {"rate_limit_per_ip": "10/minute", "rate_limit_per_user": "1000/minute"},
        "auth": {"lockout_threshold": 3},
    }


async def send(app: FastAPI, ip: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request from client address ``ip``."""
    transport = httpx.ASGITransport(app=app, client=(ip, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.request(method, path, **kwargs)


async def security(client: httpx.AsyncClient, admin: Account, **params: str) -> dict[str, Any]:
    response = await client.get(SECURITY, params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def make_keys(app: FastAPI, admin: Account, owner: Account) -> tuple[str, str]:
    """Three keys for ``owner``, the second revoked: (a valid key, the revoked one)."""
    keys = []
    for name in ("one", "two", "three"):
        created = await send(
            app, SETUP, "POST", f"/api/users/{owner.id}/api-keys",
            json={"name": name}, headers=admin.headers,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        keys.append(created.json())
    revoked = await send(app, SETUP, "DELETE", f"/api/api-keys/{keys[1]['id']}",
                         headers=admin.headers)  # fmt: skip
    assert revoked.status_code == 204
    return keys[0]["key"], keys[1]["key"]


async def generate_traffic(app: FastAPI, make_account: MakeAccount, admin: Account) -> None:
    """The known traffic whose figures the tests expect (see EXPECTED)."""
    user: Account = await make_account(Role.USER, email="locked@example.com")
    robot: Account = await make_account(Role.USER, email="robot@example.com")
    valid, revoked = await make_keys(app, admin, robot)

    # The rate limit: 10 a minute per IP. A: a SQL injection (counted) and 12 more.
    assert (await send(app, RATE_A, "GET", "/api/nowhere", params=SQL_INJECTION)).status_code == 400
    statuses = [(await send(app, RATE_A, "GET", "/api/nowhere")).status_code for _ in range(12)]
    assert statuses == [404] * 9 + [429] * 3
    statuses = [(await send(app, RATE_B, "GET", "/api/nowhere")).status_code for _ in range(11)]
    assert statuses == [404] * 10 + [429]

    # Threats: SQL injection in a query, a script in a JSON body.
    assert (await send(app, THREATS, "GET", "/api/x", params=SQL_INJECTION)).status_code == 400
    xss = {"email": "<script>alert(1)</script>", "password": "x"}
    assert (await send(app, THREATS, "POST", "/api/auth/login", json=xss)).status_code == 400

    # Logins: three wrong passwords lock the account (the third also emits the
    # lockout), the right one is then refused (another lockout event), an unknown
    # email fails, and the robot logs in twice.
    def login(email: str, password: str) -> dict[str, Any]:
        return {"json": {"email": email, "password": password}}

    for _ in range(3):
        wrong = await send(app, LOGINS, "POST", "/api/auth/login", **login(user.email, "nope"))
        assert wrong.status_code == 401
    locked = await send(app, LOGINS, "POST", "/api/auth/login", **login(user.email, PASSWORD))
    assert locked.status_code == 423
    unknown = await send(app, LOGINS, "POST", "/api/auth/login", **login("who@example.com", "x"))
    assert unknown.status_code == 401
    for _ in range(2):
        ok = await send(app, LOGINS, "POST", "/api/auth/login", **login(robot.email, PASSWORD))
        assert ok.status_code == 200, ok.text

    # API keys: three good requests; a revoked, a forged and a malformed key.
    prefix = valid.split("_")[1]
    for _ in range(3):
        me = await send(app, KEYS, "GET", "/api/auth/me", headers={"X-API-Key": valid})
        assert me.status_code == 200
    for key in (revoked, f"dm_{prefix}_forged", "nonsense"):
        refused = await send(app, KEYS, "GET", "/api/auth/me", headers={"X-API-Key": key})
        assert refused.status_code == 401

    # Refused credentials: none, a forged token, a user on the admin API.
    assert (await send(app, REFUSED, "GET", "/api/auth/me")).status_code == 401
    forged = {"Authorization": "Bearer forged"}
    assert (await send(app, REFUSED, "GET", "/api/auth/me", headers=forged)).status_code == 401
    assert (await send(app, REFUSED, "GET", SECURITY, headers=user.headers)).status_code == 403


EXPECTED: dict[str, Any] = {
    "rate_limit_violations": {"count": 4, "unique_ips": 2},
    "threat_detections": {
        "SqlInjection": 2,
        "XssScript": 1,
        "CommandInjection": 0,
        "PathTraversal": 0,
        "total": 3,
    },
    "authentication_events": {
        "successful_logins": 2,
        "failed_logins": 4,
        "account_lockouts": 2,
        "unauthorized": {
            "UnauthorizedAccess": 4,  # three bad keys and a forged token
            "AuthenticationRequired": 1,
            "TokenExpired": 0,
            "Forbidden": 1,
            "total": 6,
        },
    },
    # a forged token is not an invalid key: the metric tells them apart
    "api_key_usage": {"active_keys": 2, "requests_via_api_key": 3, "invalid_key_attempts": 3},
    "top_offending_ips": [
        {"ip": LOGINS, "events": 6, "types": {"LoginFailed": 4, "AccountLockout": 2}},
        {"ip": RATE_A, "events": 4, "types": {"RateLimit": 3, "SqlInjection": 1}},
        {"ip": KEYS, "events": 3, "types": {"UnauthorizedAccess": 3}},
        {
            "ip": REFUSED,
            "events": 3,
            "types": {"AuthenticationRequired": 1, "Forbidden": 1, "UnauthorizedAccess": 1},
        },
        {"ip": THREATS, "events": 2, "types": {"SqlInjection": 1, "XssScript": 1}},
        {"ip": RATE_B, "events": 1, "types": {"RateLimit": 1}},
    ],
}


async def test_known_traffic_gives_exact_figures(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    make_account: MakeAccount,
    monitoring: Monitoring,
    clock: FakeClock,
) -> None:
    await generate_traffic(app, make_account, admin)
    assert await monitoring.pipeline.flush()
    clock.advance(1)  # the window [now - 1 h, now) ends after the traffic's moment

    body = await security(client, admin)
    stored = monitoring.store is not None
    assert body["source"] == ("store" if stored else "live")
    assert body["window"] == {"start": iso(1 - 3600), "end": iso(1)}
    expected = EXPECTED
    if not stored:  # what needs single events is unknown without a store
        expected = {
            **EXPECTED,
            "rate_limit_violations": {"count": 4, "unique_ips": None},
            "top_offending_ips": None,
        }
    shown = {k: v for k, v in body.items() if k not in ("window", "source", "recent_events")}
    assert shown == expected
    if not stored:
        assert body["recent_events"] is None
        return
    # every one of the 19 events (fewer than RECENT_EVENTS), newest first, in the hub's shape
    recent = body["recent_events"]
    assert len(recent) == sum(ip["events"] for ip in EXPECTED["top_offending_ips"])
    assert [event["at"] for event in recent] == sorted((e["at"] for e in recent), reverse=True)
    by_type = Counter(event["event_type"] for event in recent)
    assert by_type["SqlInjection"] == 2
    assert by_type["LoginFailed"] == 4
    assert set(recent[0]) == {"event_type", "severity", "details", "client_ip", "at"}
    assert not any(PASSWORD in event["details"] for event in recent)


@pytest.mark.parametrize("monitoring", ["store"], indirect=True)
async def test_only_events_in_the_window_are_counted(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    monitoring: Monitoring,
    make_account: MakeAccount,
    clock: FakeClock,
) -> None:
    await generate_traffic(app, make_account, admin)
    assert await monitoring.pipeline.flush()
    clock.advance(20 * 60)  # now 00:20:00: one more SQL injection and one login
    late = "192.0.2.77"
    assert (await send(app, late, "GET", "/api/x", params=SQL_INJECTION)).status_code == 400
    robot = {"email": "robot@example.com", "password": PASSWORD}
    assert (await send(app, late, "POST", "/api/auth/login", json=robot)).status_code == 200
    assert await monitoring.pipeline.flush()
    clock.advance(1)

    first = await security(client, admin, start=iso(0), end=iso(60))
    assert first["window"] == {"start": iso(0), "end": iso(60)}
    assert {k: first[k] for k in EXPECTED} == EXPECTED

    last = await security(client, admin, start="5m")  # 00:15:01 .. now
    assert last["window"] == {"start": iso(1201 - 300), "end": iso(1201)}
    assert last["rate_limit_violations"] == {"count": 0, "unique_ips": 0}
    assert last["threat_detections"] == {
        "SqlInjection": 1, "XssScript": 0, "CommandInjection": 0, "PathTraversal": 0, "total": 1,
    }  # fmt: skip
    assert last["authentication_events"]["successful_logins"] == 1
    assert last["authentication_events"]["failed_logins"] == 0
    assert last["api_key_usage"] == {
        "active_keys": 2,  # keys are counted now, not in the window
        "requests_via_api_key": 0,
        "invalid_key_attempts": 0,
    }
    assert last["top_offending_ips"] == [{"ip": late, "events": 1, "types": {"SqlInjection": 1}}]
    [recent] = last["recent_events"]
    assert (recent["event_type"], recent["client_ip"], recent["at"]) == (
        "SqlInjection",
        late,
        iso(1200),
    )
    assert recent["severity"] == "Critical"

    both = await security(client, admin, start=iso(0))
    assert both["threat_detections"]["SqlInjection"] == 3
    assert both["authentication_events"]["successful_logins"] == 3
    assert both["top_offending_ips"][-1] == {"ip": RATE_B, "events": 1, "types": {"RateLimit": 1}}


@pytest.mark.parametrize("monitoring", ["store"], indirect=True)
async def test_a_quiet_window_is_all_zeros_and_never_invented(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring
) -> None:
    body = await security(client, admin)
    assert body["rate_limit_violations"] == {"count": 0, "unique_ips": 0}
    assert body["threat_detections"]["total"] == 0
    assert body["authentication_events"] == {
        "successful_logins": 0,
        "failed_logins": 0,
        "account_lockouts": 0,
        "unauthorized": {
            "UnauthorizedAccess": 0,
            "AuthenticationRequired": 0,
            "TokenExpired": 0,
            "Forbidden": 0,
            "total": 0,
        },
    }
    assert body["api_key_usage"] == {
        "active_keys": 0,
        "requests_via_api_key": 0,
        "invalid_key_attempts": 0,
    }
    assert body["top_offending_ips"] == []

    async def broken() -> Figures:
        raise ConnectionError("host database down")

    monitoring.host_figures.register("api_keys", broken)
    failed = await security(client, admin)
    assert failed["api_key_usage"]["active_keys"] is None  # unknown, not zero


@pytest.mark.parametrize("monitoring", ["store"], indirect=True)
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"window": "1h"}, "window: unknown parameter"),
        ({"start": "2h", "end": "3h"}, "start: must be before end"),
        ({"start": "yesterday"}, "start: not a timestamp or duration: 'yesterday'"),
        ({"start": "30d"}, "start: the range from start to end (30d) is longer than the "
                           "maximum (7d)"),
    ],
)  # fmt: skip
async def test_parameters_are_checked(
    client: httpx.AsyncClient, admin: Account, params: dict[str, str], message: str
) -> None:
    response = await client.get(SECURITY, params=params, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert response.json()["message"] == message


@pytest.mark.parametrize("monitoring", ["live"], indirect=True)
async def test_the_host_records_logins_and_the_credential_used(
    app: FastAPI,
    admin: Account,
    make_account: MakeAccount,
    monitoring: Monitoring,
    telemetry_sink: InMemorySink,
) -> None:
    robot: Account = await make_account(Role.USER, email="robot@example.com")
    valid, revoked = await make_keys(app, admin, robot)
    body = {"email": robot.email, "password": PASSWORD}
    assert (await send(app, KEYS, "POST", "/api/auth/login", json=body)).status_code == 200
    wrong = {"email": robot.email, "password": "nope"}
    assert (await send(app, KEYS, "POST", "/api/auth/login", json=wrong)).status_code == 401
    for key in (valid, valid, revoked):
        await send(app, KEYS, "GET", "/api/auth/me", headers={"X-API-Key": key})
    assert (await send(app, KEYS, "GET", "/api/auth/me", headers=robot.headers)).status_code == 200
    assert await monitoring.pipeline.flush()

    counts: dict[SeriesKey, int] = {}
    for (key, _), bucket in telemetry_sink.buckets.items():
        if key.name in ("auth.logins", "auth.requests"):
            counts[key] = counts.get(key, 0) + bucket.count
    assert counts == {
        SeriesKey("auth.logins", (("outcome", "succeeded"),)): 1,
        SeriesKey("auth.logins", (("outcome", "failed"),)): 1,
        SeriesKey("auth.requests", (("method", "api_key"), ("outcome", "accepted"))): 2,
        SeriesKey("auth.requests", (("method", "api_key"), ("outcome", "refused"))): 1,
        # the admin creating and revoking keys (4), and the robot's own token (1)
        SeriesKey("auth.requests", (("method", "token"), ("outcome", "accepted"))): 5,
    }
    # Who logged in is never a dimension (user ids and emails are unbounded, and personal).
    assert not any(
        str(robot.id) in value or robot.email in value
        for key in counts
        for _, value in key.dimensions
    )
