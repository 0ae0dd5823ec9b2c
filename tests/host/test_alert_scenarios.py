"""The plan's alert scenarios end to end: HTTP requests in, real receivers out.

The whole app runs on the real clock with its default rules and routing, the
embedded telemetry store (SQLite) holding alerts and the outbox, and real
receivers on 127.0.0.1: an HTTP server for Slack, one speaking Twilio's API for
SMS, and an aiosmtpd server for email. The only settings changed from the
defaults are the receivers' addresses and, for the fault scenarios, a faster
retry backoff (0.2 s base, 1 s cap, 20 attempts instead of 1 s, 300 s, 8) so
that a few retries fit in seconds.

Timeouts below are bounds for waiting, never timing assertions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from accounts import Account, MakeAccount
from digitalme.monitoring.clock import SystemClock
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.storage import upgrade_async as upgrade_store
from digitalme.settings import Role, Settings
from polling import eventually
from receivers import HttpReceiver, ReceivedRequest, Reply, SmtpReceiver, twilio_responder
from servers import find_free_port

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SLACK_PATH = "/services/T0001/B0001/XXslackTOKENxx"
TWILIO_SID = "AC0123456789abcdef0123456789abcdef"
TWILIO_TOKEN = "twilio-auth-token-never-shown"
ON_CALL = "+15550001111"
CRITICAL_MAIL = "oncall@example.com"
STANDARD_MAIL = "team@example.com"
ATTACKER = ("203.0.113.66", 40000)  # a client of its own, so its 429s are not the admin's
DEADLINE = 15.0


@pytest.fixture
def clock() -> SystemClock:
    """Real time: the engine ticks every 250 ms and request durations are measured."""
    return SystemClock()


@pytest.fixture
def slack() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def twilio() -> Iterator[HttpReceiver]:
    with HttpReceiver(twilio_responder(TWILIO_SID, TWILIO_TOKEN)) as receiver:
        yield receiver


@pytest.fixture
def smtp_port() -> int:
    """Where the email channel sends; the ``smtp`` fixture serves it."""
    return find_free_port()


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[SmtpReceiver]:
    with SmtpReceiver(port=smtp_port) as receiver:
        yield receiver


@pytest.fixture
def settings_overrides(
    tmp_path: Path, slack: HttpReceiver, twilio: HttpReceiver, smtp_port: int
) -> dict[str, Any]:
    return {
        "connection_strings": {
            "telemetry_store": f"sqlite+aiosqlite:///{tmp_path / 'telemetry.db'}"
        },
        "notifications": {
            "email": {
                "enabled": True,
                "smtp_server": "127.0.0.1",
                "smtp_port": smtp_port,
                "security": "none",
                "critical_alert_recipients": [CRITICAL_MAIL],
                "standard_alert_recipients": [STANDARD_MAIL],
                "timeout": 5,
            },
            "slack": {"enabled": True, "webhook_url": slack.url(SLACK_PATH), "timeout": 5},
            "sms": {
                "enabled": True,
                "account_sid": TWILIO_SID,
                "auth_token": TWILIO_TOKEN,
                "from_number": "+15559990000",
                "recipients": [ON_CALL],
                "base_url": twilio.url(),
                "timeout": 5,
            },
            "delivery": {"backoff_base": 0.2, "backoff_max": 1.0, "max_attempts": 20},
        },
    }


@pytest.fixture
async def monitoring(settings: Settings, clock: SystemClock) -> Monitoring:
    """The production set-up: the embedded telemetry store keeps alerts and the outbox."""
    await upgrade_store(settings.telemetry_store_url)
    return Monitoring.from_settings(settings, clock=clock, version="e2e")


@pytest.fixture
async def admin(make_account: MakeAccount) -> Account:
    account: Account = await make_account(Role.ADMIN)
    return account


@pytest.fixture
async def attacker(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=ATTACKER)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def texts(receiver: HttpReceiver) -> list[str]:
    return [request.json()["text"] for request in receiver.requests]


async def wait_for_slack(slack: HttpReceiver, text: str) -> ReceivedRequest:
    await eventually(lambda: text in texts(slack), timeout=DEADLINE, what=f"Slack: {text}")
    [request] = [request for request in slack.requests if request.json()["text"] == text]
    return request


async def active(client: httpx.AsyncClient, admin: Account, **filters: str) -> list[Any]:
    response = await client.get("/api/alerts", params=filters, headers=admin.headers)
    assert response.status_code == 200, response.text
    alerts: list[Any] = response.json()["alerts"]
    return alerts


async def deliveries(client: httpx.AsyncClient, admin: Account, alert_id: str) -> list[Any]:
    response = await client.get(f"/api/alerts/{alert_id}", headers=admin.headers)
    assert response.status_code == 200, response.text
    found: list[Any] = response.json()["deliveries"]
    return found


async def all_sent(client: httpx.AsyncClient, admin: Account, alert_id: str) -> list[Any]:
    """The alert's deliveries once every one of them is recorded as sent."""
    found: list[Any] = []

    async def done() -> bool:
        found[:] = await deliveries(client, admin, alert_id)
        return bool(found) and all(delivery["status"] == "sent" for delivery in found)

    await eventually(done, timeout=DEADLINE, what=f"every delivery of {alert_id} sent")
    return found


def fields(request: ReceivedRequest) -> dict[str, str]:
    [attachment] = request.json()["attachments"]
    return {field["title"]: field["value"] for field in attachment["fields"]}


async def test_200_rapid_requests_raise_a_rate_limit_alert_in_slack(
    client: httpx.AsyncClient,
    attacker: httpx.AsyncClient,
    admin: Account,
    slack: HttpReceiver,
    smtp: SmtpReceiver,
    twilio: HttpReceiver,
) -> None:
    statuses = [(await attacker.get("/api/personality")).status_code for _ in range(200)]
    assert statuses.count(429) == 100  # the default limit: 100 a minute per IP

    request = await wait_for_slack(slack, "🚨 Alert: Rate-limit violations spike")
    assert request.json()["attachments"][0]["color"] == "#ffaa00"  # Medium
    assert fields(request)["Severity"] == "Medium"
    assert fields(request)["Category"] == "Security"
    [alert] = await active(client, admin, rule_id="rate_limit_spike")
    assert (alert["severity"], alert["state"]) == ("Medium", "firing")
    assert alert["value"] > 30  # violations per minute over the 1 min window
    sent = await all_sent(client, admin, alert["id"])
    assert [d["channel"] for d in sent] == ["slack"]
    assert smtp.messages == []
    assert twilio.requests == []


async def test_the_slow_endpoint_raises_a_latency_alert(
    client: httpx.AsyncClient, admin: Account, slack: HttpReceiver, smtp: SmtpReceiver
) -> None:
    response = await client.post("/test/slow-endpoint", params={"seconds": 2.1})
    assert response.status_code == 200

    request = await wait_for_slack(slack, "🚨 Alert: Slow responses on POST /test/slow-endpoint")
    assert request.json()["attachments"][0]["color"] == "warning"  # High
    [alert] = await active(client, admin, rule_id="http_latency_p95")
    assert alert["labels"]["route"] == "POST /test/slow-endpoint"
    assert 2100 <= alert["value"] < 3000  # ms, the p95 of the one slow request
    assert "threshold 2000 ms" in alert["description"]
    # High: email to the standard list as well.
    await eventually(lambda: len(smtp.messages) == 1, timeout=DEADLINE, what="the email")
    [mail] = smtp.messages
    assert mail.rcpt_tos == (STANDARD_MAIL,)
    assert "Slow responses on POST /test/slow-endpoint" in mail.message()["Subject"]


async def test_an_xss_post_raises_a_security_alert(
    client: httpx.AsyncClient, admin: Account, slack: HttpReceiver, smtp: SmtpReceiver
) -> None:
    refused = await client.post(
        "/api/personality", json={"name": "<script>alert(1)</script>"}, headers=admin.headers
    )
    assert refused.status_code == 400

    [alert] = await active(client, admin, category="Security")
    assert (alert["severity"], alert["labels"]["event_type"]) == ("High", "XssScript")
    request = await wait_for_slack(slack, f"🚨 Alert: {alert['title']}")
    assert fields(request)["Category"] == "Security"
    await eventually(lambda: len(smtp.messages) == 1, timeout=DEADLINE, what="the email")
    assert smtp.messages[0].rcpt_tos == (STANDARD_MAIL,)


async def test_sql_injection_pages_by_email_slack_and_sms_and_resolving_sends_a_notice(
    client: httpx.AsyncClient,
    attacker: httpx.AsyncClient,
    admin: Account,
    slack: HttpReceiver,
    smtp: SmtpReceiver,
    twilio: HttpReceiver,
) -> None:
    refused = await attacker.get("/api/personality", params={"name": "x' OR '1'='1"})
    assert refused.status_code == 400

    [alert] = await active(client, admin, category="Security")
    assert (alert["severity"], alert["labels"]["event_type"]) == ("Critical", "SqlInjection")
    assert alert["labels"]["source"] == ATTACKER[0]
    fired = await wait_for_slack(slack, f"🚨 Alert: {alert['title']}")
    assert fired.json()["attachments"][0]["color"] == "danger"
    await eventually(lambda: len(smtp.messages) == 1, timeout=DEADLINE, what="the email")
    assert smtp.messages[0].rcpt_tos == (CRITICAL_MAIL,)
    await eventually(lambda: len(twilio.requests) == 1, timeout=DEADLINE, what="the SMS")
    sms = twilio.requests[0].form()
    assert sms["To"] == ON_CALL
    assert "SqlInjection" in sms["Body"]

    resolved = await client.post(f"/api/alerts/{alert['id']}/resolve", headers=admin.headers)
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["alert"]["resolved_by"] == admin.email
    notice = await wait_for_slack(slack, f"🟢 Alert Resolved: {alert['title']}")
    assert notice.json()["attachments"][0]["color"] == "good"
    sent = await all_sent(client, admin, alert["id"])
    # Resolved notices go to Slack only (the default routing); nobody is paged twice.
    assert sorted(d["channel"] for d in sent) == ["email", "slack", "slack", "sms"]
    assert len(twilio.requests) == 1
    assert len(smtp.messages) == 1


async def test_slack_failing_for_a_while_loses_nothing_and_keeps_order(
    client: httpx.AsyncClient, admin: Account, slack: HttpReceiver
) -> None:
    slack.script(Reply(500, b"internal_error"), times=5)
    first = await client.post(
        "/api/alerts",
        json={"title": "Queue backing up", "severity": "Medium", "category": "Performance"},
        headers=admin.headers,
    )
    first_id = first.json()["alert"]["id"]
    await client.post(f"/api/alerts/{first_id}/resolve", headers=admin.headers)
    second = await client.post(
        "/api/alerts",
        json={"title": "Cache cold", "severity": "Low", "category": "Performance"},
        headers=admin.headers,
    )
    assert second.status_code == 201

    expected = {
        "🚨 Alert: Queue backing up",
        "🟢 Alert Resolved: Queue backing up",
        "🚨 Alert: Cache cold",
    }
    await eventually(
        lambda: len(slack.requests) >= 5 and set(texts(slack)[5:]) == expected,
        timeout=DEADLINE,
        what="every notice after Slack recovered",
    )
    delivered = texts(slack)[5:]  # the first five were answered 500
    assert sorted(delivered) == sorted(expected)  # each once
    assert delivered.index("🚨 Alert: Queue backing up") < delivered.index(
        "🟢 Alert Resolved: Queue backing up"
    )
    attempts = [
        entry["outcome"]
        for delivery in await deliveries(client, admin, first_id)
        for entry in delivery["attempt_log"]
    ]
    assert attempts.count("sent") == 2
    assert "retry" in attempts


async def test_the_smtp_server_down_is_retried_then_delivered(
    client: httpx.AsyncClient, admin: Account, slack: HttpReceiver, smtp_port: int
) -> None:
    raised = await client.post(
        "/api/alerts",
        json={"title": "Replica lagging", "severity": "High", "category": "Availability"},
        headers=admin.headers,
    )
    alert_id = raised.json()["alert"]["id"]
    failed: list[Any] = []

    async def failed_twice() -> bool:
        found = await deliveries(client, admin, alert_id)
        failed[:] = [d for d in found if d["channel"] == "email" and d["attempts"] >= 2]
        return bool(failed)

    await eventually(failed_twice, timeout=DEADLINE, what="two failed email attempts")
    [email] = failed
    assert email["status"] in ("pending", "sending")  # waiting to retry, or retrying now
    assert "email" in email["last_error"]
    assert [entry["outcome"] for entry in email["attempt_log"]][:2] == ["retry", "retry"]

    with SmtpReceiver(port=smtp_port) as smtp:  # the server comes back
        await eventually(lambda: len(smtp.messages) == 1, timeout=DEADLINE, what="the email")
        sent = await all_sent(client, admin, alert_id)
    [mail] = smtp.messages
    assert mail.rcpt_tos == (STANDARD_MAIL,)
    assert "Replica lagging" in mail.message()["Subject"]
    [email] = [d for d in sent if d["channel"] == "email"]
    assert email["attempts"] >= 3
    assert email["attempt_log"][-1]["outcome"] == "sent"
    assert texts(slack) == ["🚨 Alert: Replica lagging"]  # Slack was not held back
