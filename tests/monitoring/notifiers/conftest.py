"""Notifier tests: real receivers on loopback and a factory of notifications."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from digitalme.monitoring.notifiers import Notification, NotificationKind
from digitalme.monitoring.telemetry.items import Severity
from receivers import HttpReceiver, TestCertificates

MakeNotification = Callable[..., Notification]
STARTS_AT = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    directory: Path = tmp_path_factory.mktemp("tls")
    return TestCertificates(directory)


@pytest.fixture
def make_notification() -> MakeNotification:
    """``make_notification(**fields)``: a Critical firing notification unless told otherwise."""

    def make(**fields: Any) -> Notification:
        values: dict[str, Any] = {
            "key": "alert-1:fired:1:slack",
            "kind": NotificationKind.FIRED,
            "alert_id": "alert-1",
            "fingerprint": "3f2a9c0d5b7e1a46",
            "title": "p95 latency over 2 s",
            "description": "p95 of http.server.duration is 2.4 s (threshold 2 s)",
            "severity": Severity.CRITICAL,
            "category": "Performance",
            "starts_at": STARTS_AT,
            "value": 2.4,
            "threshold": 2.0,
            "labels": {"route": "/api/personality"},
            "rule_id": "p95-latency",
        }
        values.update(fields)
        return Notification(**values)

    return make
