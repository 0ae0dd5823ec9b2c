"""Statuses, results and reports."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digitalme.monitoring.health import HealthEntry, HealthReport, HealthResult, HealthStatus, worst

AT = datetime(2026, 1, 1, tzinfo=UTC)


def entry(name: str, result: HealthResult) -> HealthEntry:
    return HealthEntry(name, result, frozenset(), AT)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], HealthStatus.HEALTHY),
        ([HealthStatus.HEALTHY, HealthStatus.HEALTHY], HealthStatus.HEALTHY),
        ([HealthStatus.HEALTHY, HealthStatus.DEGRADED], HealthStatus.DEGRADED),
        ([HealthStatus.UNHEALTHY, HealthStatus.DEGRADED], HealthStatus.UNHEALTHY),
    ],
)
def test_worst(statuses: list[HealthStatus], expected: HealthStatus) -> None:
    assert worst(statuses) is expected


def test_scores() -> None:
    assert [status.score for status in HealthStatus] == [1.0, 0.5, 0.0]


def test_results_are_immutable_including_their_data() -> None:
    data = {"users": 3}
    result = HealthResult.degraded("slow", data)
    data["users"] = 4
    assert result.data == {"users": 3}
    with pytest.raises(TypeError):
        result.data["users"] = 5  # type: ignore[index]


def test_report_status_is_the_worst_and_total_duration_the_slowest() -> None:
    fast = HealthResult(HealthStatus.HEALTHY, "ok", duration=0.01)
    slow = HealthResult(HealthStatus.DEGRADED, "slow", duration=0.2)
    report = HealthReport((entry("a", fast), entry("b", slow)), AT)
    assert report.status is HealthStatus.DEGRADED
    assert report.total_duration == 0.2
    assert HealthReport((), AT).status is HealthStatus.HEALTHY
