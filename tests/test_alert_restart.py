"""The process killed with deliveries pending: they are sent after a restart, none twice.

A real ``digitalme serve`` on the embedded SQLite store, its Slack and webhook
channels pointed at one HTTP receiver on 127.0.0.1. The receiver first answers,
then fails (500), then hangs, and the process is killed (SIGKILL) with one
delivery retrying and one in flight. A second process on the same data
directory sends everything that was not acknowledged: each notice is
acknowledged exactly once, the resolved notice after its firing one, and the
webhook's resend carries the idempotency key of the request that was in flight
(so a receiver that saw it can drop the duplicate).

Settings changed from the defaults: the receiver's URLs, a 0.2 s retry backoff
and a 3 s claim lease (60 s by default) with 2 s send timeouts, so that the
restart picks up the in-flight claim within seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from receivers import HttpReceiver, ReceivedRequest, Reply
from serve_process import ServeProcess

ADMIN_PASSWORD = "a long admin password"
SLACK_PATH = "/services/T0001/B0001/XXslackTOKENxx"
WEBHOOK_PATH = "/alertmanager"
HANG = 60.0  # seconds; longer than the test, so the request is in flight when killed
DEADLINE = 20.0  # a bound for waiting


class Receiver:
    """Answers by mode (ok, fail, hang) and keeps what it acknowledged with a 200."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.acknowledged: list[ReceivedRequest] = []
        self.hung: list[ReceivedRequest] = []
        self._lock = threading.Lock()

    def __call__(self, request: ReceivedRequest) -> Reply:
        with self._lock:
            if self.mode == "fail":
                return Reply(500, b"internal_error")
            if self.mode == "hang":
                self.hung.append(request)
                return Reply(200, delay=HANG)
            self.acknowledged.append(request)
            return Reply(200)

    def acked(self) -> list[str]:
        """What was acknowledged: ``slack: <text>`` or ``webhook: <status> <title>``."""
        with self._lock:
            return [describe(request) for request in self.acknowledged]


def describe(request: ReceivedRequest) -> str:
    try:
        body = request.json()
    except ValueError:  # cut short: the process was killed while sending it
        return "incomplete request"
    if request.path == SLACK_PATH:
        return f"slack: {body['text']}"
    [alert] = body["alerts"]
    return f"webhook: {body['status']} {alert['annotations']['summary']}"


def attempted(requests: list[ReceivedRequest], title: str) -> set[str]:
    """The paths (channels) that were sent a notice about ``title``."""
    return {request.path for request in requests if title in describe(request)}


@pytest.fixture
def receiver() -> Iterator[tuple[HttpReceiver, Receiver]]:
    behaviour = Receiver()
    with HttpReceiver(behaviour) as http:
        yield http, behaviour


def write_config(path: Path, http: HttpReceiver) -> None:
    config = {
        "server": {"data_dir": str(path.parent / "var")},
        "health": {"prober_enabled": False},
        "notifications": {
            "slack": {"enabled": True, "webhook_url": http.url(SLACK_PATH), "timeout": 2},
            "webhook": {"enabled": True, "url": http.url(WEBHOOK_PATH), "timeout": 2},
            "delivery": {"backoff_base": 0.2, "backoff_max": 1.0, "claim_lease": 3},
        },
    }
    path.write_text(yaml.safe_dump(config))


def wait_for(condition: Any, what: str) -> None:
    """Poll ``condition()`` (synchronous: the servers are other threads and processes)."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE:g} s: {what}")
        time.sleep(0.05)


def login(http: httpx.Client) -> dict[str, str]:
    response = http.post(
        "/api/auth/login", json={"email": "admin@localhost", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def raise_alert(http: httpx.Client, headers: dict[str, str], title: str) -> str:
    response = http.post(
        "/api/alerts",
        json={"title": title, "severity": "Low", "category": "Business"},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    alert_id: str = response.json()["alert"]["id"]
    return alert_id


def test_deliveries_pending_when_killed_are_sent_after_restart_once(
    tmp_path: Path, receiver: tuple[HttpReceiver, Receiver]
) -> None:
    http_receiver, behaviour = receiver
    config = tmp_path / "config.yaml"
    write_config(config, http_receiver)
    env = {"DIGITALME_CONFIG": str(config), "DIGITALME_ADMIN_PASSWORD": ADMIN_PASSWORD}

    first = ServeProcess(tmp_path, env).start()
    try:
        with httpx.Client(base_url=first.base_url, timeout=5) as http:
            headers = login(http)
            raise_alert(http, headers, "Delivered before the crash")
            wait_for(lambda: len(behaviour.acked()) == 2, "the first alert's two notices")

            behaviour.mode = "fail"
            retrying = raise_alert(http, headers, "Retrying at the crash")
            resolved = http.post(f"/api/alerts/{retrying}/resolve", headers=headers)
            assert resolved.status_code == 200, resolved.text
            wait_for(
                lambda: attempted(http_receiver.requests, "Retrying") == {SLACK_PATH, WEBHOOK_PATH},
                "failed attempts on both channels",
            )

            behaviour.mode = "hang"
            raise_alert(http, headers, "In flight at the crash")
            wait_for(
                lambda: attempted(behaviour.hung, "In flight") == {SLACK_PATH, WEBHOOK_PATH},
                "a notice in flight on both channels",
            )
    finally:
        first.kill()
    in_flight = [r for r in behaviour.hung if "In flight" in describe(r)]

    behaviour.mode = "ok"
    expected = sorted(
        f"{channel}: {notice}"
        for channel, notice in [
            ("slack", "🚨 Alert: Delivered before the crash"),
            ("webhook", "firing Delivered before the crash"),
            ("slack", "🚨 Alert: Retrying at the crash"),
            ("webhook", "firing Retrying at the crash"),
            ("slack", "🟢 Alert Resolved: Retrying at the crash"),
            ("webhook", "resolved Retrying at the crash"),
            ("slack", "🚨 Alert: In flight at the crash"),
            ("webhook", "firing In flight at the crash"),
        ]
    )
    with ServeProcess(tmp_path, env):
        wait_for(lambda: sorted(behaviour.acked()) == expected, "every notice after the restart")
    acked = behaviour.acked()
    assert sorted(acked) == expected  # each exactly once: nothing twice, nothing lost
    for channel, fired, cleared in [
        ("slack", "🚨 Alert: Retrying", "🟢 Alert Resolved: Retrying"),
        ("webhook", "firing Retrying", "resolved Retrying"),
    ]:
        order = [n for n in acked if n.startswith(f"{channel}: ") and "Retrying" in n]
        assert order[0].startswith(f"{channel}: {fired}")
        assert order[1].startswith(f"{channel}: {cleared}")

    keys = [r.headers["idempotency-key"] for r in behaviour.acknowledged if r.path == WEBHOOK_PATH]
    assert len(set(keys)) == len(keys) == 4
    in_flight_keys = {r.headers["idempotency-key"] for r in in_flight if r.path == WEBHOOK_PATH}
    assert len(in_flight_keys) == 1  # one delivery, the same key on every try
    assert in_flight_keys <= set(keys)
