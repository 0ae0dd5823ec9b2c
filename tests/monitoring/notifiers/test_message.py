"""The notification every channel receives: validation, headline and facts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from digitalme.monitoring.notifiers import Notification, NotificationKind
from digitalme.monitoring.notifiers.message import facts, format_time, headline
from digitalme.monitoring.telemetry.items import Severity

Make = Callable[..., Notification]


def test_times_must_be_timezone_aware(make_notification: Make) -> None:
    with pytest.raises(ValueError, match="starts_at must be timezone-aware"):
        make_notification(starts_at=datetime(2026, 1, 1, 12))
    with pytest.raises(ValueError, match="ends_at must be timezone-aware"):
        make_notification(ends_at=datetime(2026, 1, 1, 12))


@pytest.mark.parametrize("key", ["", "é-key", "line\nbreak", "k" * 256])
def test_key_is_short_printable_ascii(make_notification: Make, key: str) -> None:
    # It travels as the Idempotency-Key header and names the email's Message-ID.
    with pytest.raises(ValueError, match="key must be 1 to 255 printable ASCII"):
        make_notification(key=key)


def test_count_is_at_least_one(make_notification: Make) -> None:
    with pytest.raises(ValueError, match="count"):
        make_notification(count=0)


def test_mappings_are_read_only_copies(make_notification: Make) -> None:
    labels = {"route": "/a"}
    notification = make_notification(labels=labels)
    labels["route"] = "/changed"
    assert notification.labels["route"] == "/a"
    with pytest.raises(TypeError):
        notification.labels["route"] = "/b"  # type: ignore[index]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (NotificationKind.FIRED, "[Critical] p95 latency over 2 s"),
        (NotificationKind.REPEATED, "[Critical] p95 latency over 2 s (still firing)"),
        (NotificationKind.RESOLVED, "[RESOLVED] p95 latency over 2 s"),
        (NotificationKind.TEST, "[TEST] p95 latency over 2 s"),
    ],
)
def test_headline_by_kind(make_notification: Make, kind: NotificationKind, expected: str) -> None:
    assert headline(make_notification(kind=kind)) == expected


def test_headline_has_no_line_breaks(make_notification: Make) -> None:
    assert headline(make_notification(title="two\r\nlines")) == "[Critical] two lines"


def test_facts_start_with_the_plans_four_fields(make_notification: Make) -> None:
    rows = facts(make_notification(severity=Severity.HIGH, count=10_000))
    assert [label for label, _ in rows[:4]] == ["Description", "Severity", "Category", "Time"]
    assert dict(rows)["Severity"] == "High"
    assert dict(rows)["Time"] == "2026-01-01 12:00:00 UTC"
    assert dict(rows)["Value"] == "2.4"
    assert dict(rows)["Events"] == "10,000"
    assert dict(rows)["Alert"] == "alert-1"


def test_facts_leave_out_what_is_unknown(make_notification: Make) -> None:
    labels = [label for label, _ in facts(make_notification(value=None, threshold=None))]
    assert "Value" not in labels
    assert "Threshold" not in labels
    assert "Events" not in labels
    assert "Resolved by" not in labels


def test_time_is_shown_in_utc() -> None:
    moment = datetime(2026, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2026-01-01 12:00:00 UTC"
