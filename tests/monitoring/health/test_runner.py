"""The runner: concurrent, bounded by timeouts, redacted, cached and single-flight."""

from __future__ import annotations

import asyncio
import time

import pytest

from digitalme.monitoring.health import (
    EXTERNAL,
    CheckFailed,
    DuplicateCheck,
    HealthResult,
    HealthStatus,
)
from digitalme.monitoring.health.registry import HealthRegistry
from digitalme.monitoring.health.runner import HealthRunner
from digitalme.monitoring.testing import FakeClock, ScriptedCheck

from .conftest import CACHE_SECONDS

SECRET_URL = "postgresql://user:secretpw@db.internal/app"


async def test_checks_run_concurrently_and_overall_is_the_worst(
    registry: HealthRegistry, runner: HealthRunner
) -> None:
    registry.add(ScriptedCheck("a", delay=0.2), timeout=5)
    registry.add(ScriptedCheck("b", HealthResult.degraded("slow"), delay=0.2), timeout=5)
    registry.add(ScriptedCheck("c", delay=0.2), timeout=5)
    started = time.perf_counter()
    report = await runner.report()
    elapsed = time.perf_counter() - started
    assert elapsed < 0.55  # one check's delay, not three
    assert [e.name for e in report.entries] == ["a", "b", "c"]
    assert report.status is HealthStatus.DEGRADED
    assert report.timestamp == FakeClock().now()


async def test_a_check_that_hangs_is_cut_at_its_timeout_and_others_still_report(
    registry: HealthRegistry, runner: HealthRunner
) -> None:
    hanging = ScriptedCheck("hangs")
    hanging.hang()
    registry.add(hanging, failure_status=HealthStatus.DEGRADED, timeout=0.2)
    registry.add(ScriptedCheck("fine"), timeout=5)
    started = time.perf_counter()
    report = await asyncio.wait_for(runner.report(), timeout=10)
    assert 0.2 <= time.perf_counter() - started < 5
    by_name = {e.name: e.result for e in report.entries}
    assert by_name["hangs"].status is HealthStatus.DEGRADED
    assert by_name["hangs"].description == "timed out after 0.2 s"
    assert by_name["fine"].status is HealthStatus.HEALTHY
    assert report.status is HealthStatus.DEGRADED


async def test_a_raising_check_counts_as_its_failure_status_with_a_redacted_error(
    registry: HealthRegistry, runner: HealthRunner
) -> None:
    broken = ScriptedCheck("database")
    broken.error = ConnectionError(f"could not connect to {SECRET_URL}")
    registry.add(broken, failure_status=HealthStatus.UNHEALTHY, timeout=5)
    report = await runner.report()
    result = report.entries[0].result
    assert result.status is HealthStatus.UNHEALTHY
    assert result.description == "check failed"
    assert result.error is not None
    assert result.error.startswith("ConnectionError: could not connect to postgresql://user:")
    assert "secretpw" not in result.error


async def test_check_failed_gives_its_description_data_and_the_redacted_cause(
    registry: HealthRegistry, runner: HealthRunner
) -> None:
    class Failing:
        name = "store"

        async def check(self) -> HealthResult:
            try:
                raise OSError(f"refused by {SECRET_URL}")
            except OSError as exc:
                raise CheckFailed("store unreachable", {"backend": "postgresql"}) from exc

    registry.add(Failing(), failure_status=HealthStatus.DEGRADED, timeout=5)
    result = (await runner.report()).entries[0].result
    assert result.status is HealthStatus.DEGRADED
    assert result.description == "store unreachable"
    assert result.data == {"backend": "postgresql"}
    assert result.error is not None
    assert "OSError" in result.error
    assert "secretpw" not in result.error


async def test_a_checks_own_timeout_error_is_a_failure_not_the_deadline(
    registry: HealthRegistry, runner: HealthRunner
) -> None:
    check = ScriptedCheck("upstream")
    check.error = TimeoutError()
    registry.add(check, failure_status=HealthStatus.DEGRADED, timeout=5)
    result = (await runner.report()).entries[0].result
    assert (result.status, result.description, result.error) == (
        HealthStatus.DEGRADED,
        "check failed",
        "TimeoutError",
    )


async def test_what_a_check_returns_is_redacted_too(
    registry: HealthRegistry, runner: HealthRunner
) -> None:
    leaky = HealthResult.degraded(
        f"degraded at {SECRET_URL}", {"dsn": SECRET_URL, "count": 3}, f"from {SECRET_URL}"
    )
    registry.add(ScriptedCheck("leaky", leaky), timeout=5)
    result = (await runner.report()).entries[0].result
    assert "secretpw" not in repr(result)
    assert result.data["count"] == 3


async def test_a_check_returning_something_else_fails(
    registry: HealthRegistry, runner: HealthRunner
) -> None:
    class Confused:
        name = "confused"

        async def check(self) -> HealthResult:
            return "fine"  # type: ignore[return-value]

    registry.add(Confused(), failure_status=HealthStatus.DEGRADED, timeout=5)
    result = (await runner.report()).entries[0].result
    assert result.status is HealthStatus.DEGRADED
    assert "str" in result.description


async def test_results_are_cached_for_cache_seconds(
    registry: HealthRegistry, runner: HealthRunner, clock: FakeClock
) -> None:
    check = ScriptedCheck("counted")
    registry.add(check, timeout=5)
    first = await runner.report()
    clock.advance(CACHE_SECONDS - 0.1)
    second = await runner.report()
    assert check.calls == 1
    assert second.entries == first.entries
    clock.advance(0.2)
    await runner.report()
    assert check.calls == 2
    await runner.report(max_age=0.0)
    assert check.calls == 3


async def test_concurrent_requests_share_one_run(
    registry: HealthRegistry, runner: HealthRunner
) -> None:
    checks = [ScriptedCheck(name, delay=0.1) for name in ("a", "b", "c")]
    for check in checks:
        registry.add(check, timeout=5)
    reports = await asyncio.gather(*(runner.report(max_age=0.0) for _ in range(100)))
    assert [check.calls for check in checks] == [1, 1, 1]
    assert runner.runs == 3
    assert len({report.entries for report in reports}) == 1


async def test_min_interval_holds_even_for_a_fresh_request(
    registry: HealthRegistry, runner: HealthRunner, clock: FakeClock
) -> None:
    paid = ScriptedCheck("paid")
    registry.add(paid, timeout=5, min_interval=60)
    await runner.report()
    clock.advance(30)
    await runner.report(max_age=0.0)
    assert paid.calls == 1
    clock.advance(31)
    await runner.report(max_age=0.0)
    assert paid.calls == 2


async def test_excluded_tags_are_neither_reported_nor_run(
    registry: HealthRegistry, runner: HealthRunner
) -> None:
    external = ScriptedCheck("claude-api")
    registry.add(external, timeout=5, tags=[EXTERNAL])
    registry.add(ScriptedCheck("database"), timeout=5, tags=["ready"])
    report = await runner.report(exclude_tags=frozenset({EXTERNAL}))
    assert [e.name for e in report.entries] == ["database"]
    assert external.calls == 0


async def test_a_waiter_that_goes_away_does_not_cancel_the_shared_run(
    registry: HealthRegistry, runner: HealthRunner
) -> None:
    check = ScriptedCheck("slow", delay=0.2)
    registry.add(check, timeout=5)
    impatient = asyncio.create_task(runner.report())
    await asyncio.sleep(0.05)
    impatient.cancel()
    report = await runner.report()
    assert report.entries[0].status is HealthStatus.HEALTHY
    assert check.calls == 1


async def test_aclose_cancels_runs_in_flight(
    registry: HealthRegistry, runner: HealthRunner
) -> None:
    hanging = ScriptedCheck("hangs")
    hanging.hang()
    registry.add(hanging, timeout=60)
    waiter = asyncio.create_task(runner.report())
    await asyncio.sleep(0.05)
    await asyncio.wait_for(runner.aclose(), timeout=5)
    with pytest.raises(asyncio.CancelledError):
        await waiter


def test_registration_is_validated(registry: HealthRegistry) -> None:
    registry.add(ScriptedCheck("one"), timeout=1)
    with pytest.raises(DuplicateCheck) as caught:
        registry.add(ScriptedCheck("one"), timeout=1)
    assert caught.value.name == "one"
    with pytest.raises(ValueError, match="timeout"):
        registry.add(ScriptedCheck("two"), timeout=0)
    with pytest.raises(ValueError, match="min_interval"):
        registry.add(ScriptedCheck("three"), timeout=1, min_interval=-1)
    assert registry.names() == ["one"]


async def test_registry_closes_checks_that_hold_connections(registry: HealthRegistry) -> None:
    check = ScriptedCheck("closable")
    registry.add(check, timeout=1)
    await registry.aclose()
    assert check.closed
