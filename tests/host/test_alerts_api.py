"""The admin alert API through the real app: auth, each route, validation and secret masking."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from accounts import Account, MakeAccount
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import Role
from polling import eventually
from receivers import HttpReceiver, Reply

SLACK_PATH = "/services/T0001/B0001/XXslackTOKENxx"
DEADLINE = 10.0


@pytest.fixture
def slack_receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def settings_overrides(slack_receiver: HttpReceiver) -> dict[str, Any]:
    return {
        "security": {"rate_limit_per_ip": "10000/minute", "rate_limit_per_user": "10000/minute"},
        "notifications": {
            "slack": {"enabled": True, "webhook_url": slack_receiver.url(SLACK_PATH)},
        },
    }


@pytest.fixture
async def admin(make_account: MakeAccount) -> Account:
    account: Account = await make_account(Role.ADMIN)
    return account


MANUAL = {
    "title": "Disk almost full",
    "description": "db-1 has 2% free",
    "severity": "High",
    "category": "Availability",
    "properties": {"host": "db-1"},
    "affected_components": ["database"],
}

RULE = {
    "id": "checkout_latency",
    "name": "Slow checkout",
    "metric_name": "http.server.duration",
    "aggregation": "p99",
    "operator": ">",
    "threshold": 1500,
    "evaluation_window": "5m",
}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code
    assert set(body) >= {"error", "message", "request_id"}
    assert body["request_id"]
    return body


ROUTES = [
    ("GET", "/api/alerts"),
    ("POST", "/api/alerts"),
    ("GET", "/api/alerts/history"),
    ("GET", "/api/alerts/some-id"),
    ("POST", "/api/alerts/some-id/resolve"),
    ("GET", "/api/alerts/rules"),
    ("POST", "/api/alerts/rules"),
    ("PUT", "/api/alerts/rules/x"),
    ("DELETE", "/api/alerts/rules/x"),
    ("GET", "/api/alerts/silences"),
    ("POST", "/api/alerts/silences"),
    ("DELETE", "/api/alerts/silences/x"),
    ("POST", "/api/notifications/test"),
]


async def test_admins_only(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    user: Account = await make_account(Role.USER)
    super_admin: Account = await make_account(Role.SUPER_ADMIN)
    for method, path in ROUTES:
        anonymous = await client.request(method, path, json={})
        assert_error(anonymous, 401, "unauthorized")
        assert anonymous.headers["www-authenticate"] == "Bearer"
        bad_token = await client.request(
            method, path, json={}, headers={"Authorization": "Bearer nope"}
        )
        assert_error(bad_token, 401, "unauthorized")
        assert_error(
            await client.request(method, path, json={}, headers=user.headers), 403, "forbidden"
        )
    allowed = await client.get("/api/alerts", headers=super_admin.headers)
    assert allowed.status_code == 200


async def test_raise_list_get_and_resolve_by_hand(
    client: httpx.AsyncClient,
    admin: Account,
    clock: FakeClock,
    slack_receiver: HttpReceiver,
) -> None:
    created = await client.post("/api/alerts", json=MANUAL, headers=admin.headers)
    assert created.status_code == 201, created.text
    alert = created.json()["alert"]
    assert (alert["state"], alert["severity"], alert["rule_id"]) == ("firing", "High", "manual")
    assert alert["properties"] == {"host": "db-1", "raised_by": admin.email}

    listed = await client.get("/api/alerts", headers=admin.headers)
    assert [a["id"] for a in listed.json()["alerts"]] == [alert["id"]]
    for query, expected in [
        ("severity=high", 1),
        ("severity=Critical", 0),
        ("category=Availability&state=firing", 1),
        ("rule_id=manual&silenced=false", 1),
        ("silenced=true", 0),
    ]:
        found = await client.get(f"/api/alerts?{query}", headers=admin.headers)
        assert len(found.json()["alerts"]) == expected, query

    await eventually(lambda: len(slack_receiver.requests) == 1, timeout=DEADLINE, what="Slack")
    detail = await client.get(f"/api/alerts/{alert['id']}", headers=admin.headers)
    assert detail.status_code == 200
    body = detail.json()
    assert [e["kind"] for e in body["events"]] == ["fired"]
    [delivery] = body["deliveries"]
    assert delivery["channel"] == "slack"
    assert "payload" not in delivery

    async def sent() -> bool:
        detail = await client.get(f"/api/alerts/{alert['id']}", headers=admin.headers)
        return bool(detail.json()["deliveries"][0]["status"] == "sent")

    await eventually(sent, timeout=DEADLINE, what="the delivery marked sent")
    detail = await client.get(f"/api/alerts/{alert['id']}", headers=admin.headers)
    [attempt] = detail.json()["deliveries"][0]["attempt_log"]
    assert (attempt["outcome"], attempt["detail"]) == ("sent", "HTTP 200")

    clock.advance(60)
    resolved = await client.post(f"/api/alerts/{alert['id']}/resolve", headers=admin.headers)
    assert resolved.status_code == 200
    assert resolved.json()["alert"]["state"] == "resolved"
    assert resolved.json()["alert"]["resolved_by"] == admin.email
    again = await client.post(f"/api/alerts/{alert['id']}/resolve", headers=admin.headers)
    assert admin.email in assert_error(again, 409, "conflict")["message"]
    missing = await client.post("/api/alerts/nope/resolve", headers=admin.headers)
    assert_error(missing, 404, "not_found")
    assert_error(await client.get("/api/alerts/nope", headers=admin.headers), 404, "not_found")
    await eventually(lambda: len(slack_receiver.requests) == 2, timeout=DEADLINE, what="resolved")
    assert slack_receiver.requests[1].json()["text"] == "🟢 Alert Resolved: Disk almost full"

    history = await client.get("/api/alerts/history?state=resolved&limit=5", headers=admin.headers)
    assert [a["id"] for a in history.json()["alerts"]] == [alert["id"]]
    since = (clock.now() + timedelta(hours=1)).isoformat()
    later = await client.get("/api/alerts/history", params={"since": since}, headers=admin.headers)
    assert later.json()["alerts"] == []


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("GET", "/api/alerts?severity=Huge", None, "severity"),
        ("GET", "/api/alerts?silenced=perhaps", None, "silenced"),
        ("GET", "/api/alerts/history?limit=0", None, "limit"),
        ("GET", "/api/alerts/history?since=yesterday", None, "since"),
        ("GET", "/api/alerts/history?colour=red", None, "colour"),
        ("POST", "/api/alerts", {**MANUAL, "title": ""}, "title"),
        ("POST", "/api/alerts", {**MANUAL, "severity": "Urgent"}, "severity"),
        ("POST", "/api/alerts", {k: v for k, v in MANUAL.items() if k != "category"}, "category"),
        ("POST", "/api/alerts", [1, 2], "body"),
        ("POST", "/api/alerts/rules", {**RULE, "threshold": None}, "threshold"),
        ("POST", "/api/alerts/rules", {**RULE, "operator": "~"}, "operator"),
        ("POST", "/api/alerts/rules", {**RULE, "evaluation_window": "2h"}, "evaluation_window"),
        ("POST", "/api/alerts/rules", {**RULE, "filters": {"route": "=~("}}, "filters"),
        ("PUT", "/api/alerts/rules/http_latency_p95", RULE, "id"),
        (
            "POST",
            "/api/alerts/silences",
            {"matchers": {}, "ends_at": "2030-01-01T00:00:00Z"},
            "matchers",
        ),
        ("POST", "/api/alerts/silences", {"matchers": {"a": "b"}}, "ends_at"),
        ("POST", "/api/notifications/test", {}, "channel"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient,
    admin: Account,
    method: str,
    path: str,
    payload: Any,
    field: str,
) -> None:
    response = await client.request(method, path, json=payload, headers=admin.headers)
    body = assert_error(response, 422, "validation_error")
    assert body["message"].startswith(f"{field}"), body["message"]


async def test_invalid_json_is_422(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post(
        "/api/alerts",
        content=b"{not json",
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert assert_error(response, 422, "validation_error")["message"] == "body: not valid JSON"


async def test_rule_crud(client: httpx.AsyncClient, admin: Account, monitoring: Monitoring) -> None:
    engine = monitoring.alerts
    assert engine is not None
    listed = (await client.get("/api/alerts/rules", headers=admin.headers)).json()["rules"]
    latency = next(rule for rule in listed if rule["id"] == "http_latency_p95")
    assert latency["source"] == "default"

    created = await client.post("/api/alerts/rules", json=RULE, headers=admin.headers)
    assert created.status_code == 201, created.text
    rule = created.json()["rule"]
    assert (rule["source"], rule["updated_by"], rule["evaluation_window"]) == (
        "api",
        admin.email,
        300.0,
    )
    assert "checkout_latency" in [r.id for r in engine.rules]
    duplicate = await client.post("/api/alerts/rules", json=RULE, headers=admin.headers)
    assert_error(duplicate, 409, "conflict")
    stored = await engine.store.list_rules()
    assert [s.id for s in stored] == ["checkout_latency"]

    changed = await client.put(
        "/api/alerts/rules/checkout_latency",
        json={**RULE, "threshold": 2500},
        headers=admin.headers,
    )
    assert changed.json()["rule"]["threshold"] == 2500
    assert next(r for r in engine.rules if r.id == "checkout_latency").threshold == 2500
    fetched = await client.get("/api/alerts/rules/checkout_latency", headers=admin.headers)
    assert fetched.json()["rule"]["threshold"] == 2500

    override = {**latency, "threshold": 3000}
    for key in ("source", "overrides", "updated_at", "updated_by"):
        override.pop(key)
    overridden = await client.put(
        "/api/alerts/rules/http_latency_p95", json=override, headers=admin.headers
    )
    assert overridden.status_code == 200, overridden.text
    assert (overridden.json()["rule"]["source"], overridden.json()["rule"]["overrides"]) == (
        "api",
        "default",
    )
    assert next(r for r in engine.rules if r.id == "http_latency_p95").threshold == 3000
    restored = await client.delete("/api/alerts/rules/http_latency_p95", headers=admin.headers)
    assert restored.status_code == 200
    assert restored.json()["restored"]["threshold"] == latency["threshold"]
    assert next(r for r in engine.rules if r.id == "http_latency_p95").threshold == 2000

    undeletable = await client.delete("/api/alerts/rules/http_latency_p95", headers=admin.headers)
    assert "enabled: false" in assert_error(undeletable, 409, "conflict")["message"]
    deleted = await client.delete("/api/alerts/rules/checkout_latency", headers=admin.headers)
    assert deleted.status_code == 204
    assert "checkout_latency" not in [r.id for r in engine.rules]
    for method in ("GET", "PUT", "DELETE"):
        missing = await client.request(
            method, "/api/alerts/rules/checkout_latency", json=RULE, headers=admin.headers
        )
        assert_error(missing, 404, "not_found")


async def test_silence_crud_and_silenced_alerts(
    client: httpx.AsyncClient, admin: Account, clock: FakeClock
) -> None:
    ends = (clock.now() + timedelta(hours=2)).isoformat()
    created = await client.post(
        "/api/alerts/silences",
        json={
            "matchers": {"alertname": "manual", "severity": "=~High|Low"},
            "ends_at": ends,
            "comment": "maintenance",
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    silence = created.json()["silence"]
    assert (silence["created_by"], silence["active"]) == (admin.email, True)

    await client.post("/api/alerts", json=MANUAL, headers=admin.headers)
    [alert] = (await client.get("/api/alerts?silenced=true", headers=admin.headers)).json()[
        "alerts"
    ]
    assert alert["silenced"] is True
    detail = (await client.get(f"/api/alerts/{alert['id']}", headers=admin.headers)).json()
    assert [d["status"] for d in detail["deliveries"]] == ["suppressed"]

    listed = (await client.get("/api/alerts/silences", headers=admin.headers)).json()["silences"]
    assert [s["id"] for s in listed] == [silence["id"]]
    deleted = await client.delete(f"/api/alerts/silences/{silence['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    again = await client.delete(f"/api/alerts/silences/{silence['id']}", headers=admin.headers)
    assert_error(again, 404, "not_found")
    [alert] = (await client.get("/api/alerts", headers=admin.headers)).json()["alerts"]
    assert alert["silenced"] is False


async def test_notification_test_reports_the_outcome_without_secrets(
    client: httpx.AsyncClient, admin: Account, slack_receiver: HttpReceiver
) -> None:
    sent = await client.post(
        "/api/notifications/test", json={"channel": "slack"}, headers=admin.headers
    )
    assert sent.status_code == 200, sent.text
    assert (sent.json()["outcome"], sent.json()["detail"]) == ("sent", "HTTP 200")
    [request] = slack_receiver.requests
    assert "Test notification from DigitalMe" in request.json()["text"]

    slack_receiver.script(Reply(404, f"no_service at {SLACK_PATH}".encode()))
    failed = await client.post(
        "/api/notifications/test", json={"channel": "slack"}, headers=admin.headers
    )
    body = assert_error(failed, 502, "delivery_failed")
    assert body["message"].startswith("slack: HTTP 404")
    assert (body["permanent"], body["status"]) == (True, 404)
    assert "XXslackTOKENxx" not in failed.text

    for channel in ("email", "pager"):
        refused = await client.post(
            "/api/notifications/test", json={"channel": channel}, headers=admin.headers
        )
        message = assert_error(refused, 422, "validation_error")["message"]
        assert message == f"channel: {channel!r} is not an enabled channel (enabled: slack)"

    # no response of the API shows a channel secret
    for path in ("/api/alerts", "/api/alerts/rules", "/api/alerts/silences"):
        answer = await client.get(path, headers=admin.headers)
        assert "XXslackTOKENxx" not in answer.text
