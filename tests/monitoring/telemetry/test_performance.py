"""PerformanceMonitor: operation scopes and the plan's record_* helpers.

A real TelemetryClient (strict, so internal errors fail loudly) over a real
buffer and series registry; durations are driven by a FakeClock.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Iterator
from datetime import timedelta

import pytest

from digitalme.monitoring.telemetry.buffer import ItemBuffer
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.items import EventItem
from digitalme.monitoring.telemetry.performance import (
    OperationScope,
    PerformanceMonitor,
    current_operation,
)
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.testing import FakeClock

Dims = tuple[tuple[str, str], ...]


class Recorded:
    """What a monitor wrote through its client."""

    def __init__(self, *, strict: bool = True) -> None:
        self.clock = FakeClock()
        self.buffer = ItemBuffer(1000)
        self.registry = SeriesRegistry()
        self.client = TelemetryClient(
            clock=self.clock, buffer=self.buffer, registry=self.registry, strict=strict
        )
        self.monitor = PerformanceMonitor(self.client, self.clock)
        self._events: list[EventItem] = []

    def metric(self, name: str) -> dict[Dims, list[float]]:
        """Values of every series of ``name``, by dimensions."""
        return {
            s.key.dimensions: list(s.pending) for s in self.registry.all() if s.key.name == name
        }

    def all_dims(self) -> list[Dims]:
        return [s.key.dimensions for s in self.registry.all()]

    def events(self, name: str | None = None) -> list[EventItem]:
        self._events += [i for i in self.buffer.drain() if isinstance(i, EventItem)]
        return [e for e in self._events if name is None or e.name == name]


@pytest.fixture
def rec() -> Recorded:
    return Recorded()


def dims(**kw: str) -> Dims:
    return tuple(sorted(kw.items()))


OK = dims(Operation="Generate", Success="true")
FAILED = dims(Operation="Generate", Success="false")


# -- operation scope: context managers -----------------------------------------------


def test_sync_scope_records_duration_and_success(rec: Recorded) -> None:
    with rec.monitor.operation("Generate", {"ProfileId": "7"}) as scope:
        rec.clock.advance(0.25)
    assert rec.metric("Operation.Duration") == {OK: pytest.approx([250.0])}
    (event,) = rec.events("Operation.Completed")
    assert event.properties == {"ProfileId": "7", "Operation": "Generate", "Success": "true"}
    assert event.measurements == {"DurationMs": 250.0}
    assert scope.success is True
    assert scope.duration == 0.25


def test_sync_scope_failure_propagates_the_same_exception(rec: Recorded) -> None:
    error = ValueError("boom")

    def run() -> None:
        with rec.monitor.operation("Generate"):
            rec.clock.advance(1.5)
            raise error

    with pytest.raises(ValueError, match="boom") as caught:
        run()
    assert caught.value is error
    assert rec.metric("Operation.Duration") == {FAILED: pytest.approx([1500.0])}
    (event,) = rec.events("Operation.Completed")
    assert event.properties["Success"] == "false"
    assert event.properties["ErrorType"] == "ValueError"


async def test_async_scope_success_and_failure(rec: Recorded) -> None:
    async with rec.monitor.operation("Generate"):
        await asyncio.sleep(0)
        rec.clock.advance(0.1)

    async def fail() -> None:
        async with rec.monitor.operation("Generate"):
            rec.clock.advance(0.2)
            raise KeyError("x")

    with pytest.raises(KeyError):
        await fail()
    assert rec.metric("Operation.Duration") == {
        OK: pytest.approx([100.0]),
        FAILED: pytest.approx([200.0]),
    }


async def test_cancelled_operation_is_recorded_failed_and_cancellation_propagates(
    rec: Recorded,
) -> None:
    started = asyncio.Event()

    async def body() -> None:
        async with rec.monitor.operation("Generate"):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await started.wait()
    rec.clock.advance(3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rec.metric("Operation.Duration") == {FAILED: pytest.approx([3000.0])}
    assert rec.events("Operation.Completed")[0].properties["ErrorType"] == "CancelledError"


def test_explicit_fail_and_properties_set_during_the_body(rec: Recorded) -> None:
    with rec.monitor.operation("Generate", {"Source": "api"}) as scope:
        scope.set_property("Tokens", 42)
        scope.properties["Model"] = "claude"
        scope.fail("empty answer")
        rec.clock.advance(0.5)
    assert rec.metric("Operation.Duration") == {FAILED: pytest.approx([500.0])}
    (event,) = rec.events("Operation.Completed")
    assert event.properties == {
        "Source": "api",
        "Tokens": 42,
        "Model": "claude",
        "FailureReason": "empty answer",
        "Operation": "Generate",
        "Success": "false",
    }
    assert "ErrorType" not in event.properties


def test_properties_never_become_metric_dimensions(rec: Recorded) -> None:
    with rec.monitor.operation("Generate", {"UserId": "u-1", "ProfileId": "9"}):
        pass
    assert rec.metric("Operation.Duration") == {OK: pytest.approx([0.0])}
    assert rec.events("Operation.Completed")[0].properties["UserId"] == "u-1"


def test_caller_properties_are_copied_not_mutated(rec: Recorded) -> None:
    props: dict[str, object] = {"Source": "api"}
    with rec.monitor.operation("Generate", props) as scope:
        scope.set_property("Extra", 1)
    assert props == {"Source": "api"}


def test_a_scope_is_single_use(rec: Recorded) -> None:
    scope = rec.monitor.operation("Generate")
    with scope:
        pass
    with pytest.raises(RuntimeError, match="already entered"), scope:
        pass  # pragma: no cover


def test_nested_scopes_name_their_parent_and_restore_the_current_one(rec: Recorded) -> None:
    assert current_operation() is None
    with rec.monitor.operation("Outer") as outer:
        assert current_operation() is outer
        with rec.monitor.operation("Inner") as inner:
            assert current_operation() is inner
        assert current_operation() is outer
    assert current_operation() is None
    inner_event, outer_event = rec.events("Operation.Completed")
    assert inner_event.properties["ParentOperation"] == "Outer"
    assert "ParentOperation" not in outer_event.properties


# -- operation scope: decorators --------------------------------------------------------


def test_decorated_sync_function(rec: Recorded) -> None:
    @rec.monitor.operation("Generate", {"Kind": "sync"})
    def generate(x: int) -> int:
        """Doubles."""
        rec.clock.advance(0.01 * x)
        return 2 * x

    assert generate(1) == 2
    assert generate(2) == 4
    assert generate.__name__ == "generate"
    assert generate.__doc__ == "Doubles."
    assert rec.metric("Operation.Duration") == {OK: [pytest.approx(10.0), pytest.approx(20.0)]}
    assert [e.properties["Kind"] for e in rec.events("Operation.Completed")] == ["sync", "sync"]


def test_decorated_sync_function_failure(rec: Recorded) -> None:
    @rec.monitor.operation("Generate")
    def generate() -> None:
        rec.clock.advance(0.3)
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError, match="model down"):
        generate()
    assert rec.metric("Operation.Duration") == {FAILED: pytest.approx([300.0])}


async def test_decorated_async_function(rec: Recorded) -> None:
    @rec.monitor.operation("Generate")
    async def generate(x: int) -> int:
        await asyncio.sleep(0)
        rec.clock.advance(0.2)
        return x + 1

    assert inspect.iscoroutinefunction(generate)
    assert await generate(1) == 2

    @rec.monitor.operation("Generate")
    async def broken() -> None:
        rec.clock.advance(0.4)
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError):
        await broken()
    assert rec.metric("Operation.Duration") == {
        OK: pytest.approx([200.0]),
        FAILED: pytest.approx([400.0]),
    }


async def test_decorated_function_reaches_its_own_scope(rec: Recorded) -> None:
    scopes: list[OperationScope | None] = []

    @rec.monitor.operation("Generate")
    async def generate(user: str, fail: bool) -> None:
        scope = current_operation()
        scopes.append(scope)
        assert scope is not None
        scope.set_property("User", user)
        await asyncio.sleep(0)
        if fail:
            scope.fail("refused")

    # Concurrent calls each get a scope of their own.
    await asyncio.gather(generate("a", False), generate("b", True))
    assert len({id(s) for s in scopes}) == 2
    events = {e.properties["User"]: e.properties for e in rec.events("Operation.Completed")}
    assert events["a"]["Success"] == "true"
    assert events["b"]["Success"] == "false"
    assert events["b"]["FailureReason"] == "refused"
    assert rec.metric("Operation.Duration") == {
        OK: pytest.approx([0.0]),
        FAILED: pytest.approx([0.0]),
    }


def test_decorating_a_generator_function_is_refused(rec: Recorded) -> None:
    def numbers() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        rec.monitor.operation("Numbers")(numbers)


def test_decorator_works_on_partials(rec: Recorded) -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    wrapped = rec.monitor.operation("Add")(functools.partial(add, 1))
    assert inspect.iscoroutinefunction(wrapped)
    assert asyncio.run(wrapped(2)) == 3
    assert rec.metric("Operation.Duration") == {
        dims(Operation="Add", Success="true"): pytest.approx([0.0])
    }


# -- telemetry problems never reach the caller --------------------------------------------


class BrokenClock(FakeClock):
    """A clock that fails from its second monotonic() call on."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def monotonic(self) -> float:
        self.calls += 1
        if self.calls > 1:
            raise OSError("clock gone")
        return super().monotonic()


def test_a_failing_recording_does_not_raise_into_the_caller() -> None:
    rec = Recorded(strict=False)
    monitor = PerformanceMonitor(rec.client, BrokenClock())
    with monitor.operation("Generate"):
        pass
    rec.monitor.record_database_query("SELECT", "not a duration", True)  # type: ignore[arg-type]
    assert rec.client.internal_errors == 2
    assert rec.metric("Operation.Duration") == {}


def test_the_body_exception_wins_over_a_failing_recording() -> None:
    rec = Recorded(strict=False)
    monitor = PerformanceMonitor(rec.client, BrokenClock())
    with pytest.raises(ZeroDivisionError), monitor.operation("Generate"):
        _ = 1 / 0
    assert rec.client.internal_errors == 1


def test_strict_client_raises_telemetry_errors(rec: Recorded) -> None:
    with pytest.raises(ValueError, match="could not convert"):
        rec.monitor.record_database_query("SELECT", "nope", True)  # type: ignore[arg-type]


# -- record_database_query -----------------------------------------------------------------


def test_database_query_success_with_table(rec: Recorded) -> None:
    rec.monitor.record_database_query("SELECT", 0.012, True, "users")
    expected = dims(QueryType="SELECT", Success="true", TableName="users")
    assert rec.metric("Database.Query.Duration") == {expected: [pytest.approx(12.0)]}
    assert rec.metric("Database.Query.Count") == {expected: [1.0]}
    assert rec.events() == []


def test_database_query_failure_without_table(rec: Recorded) -> None:
    rec.monitor.record_database_query("INSERT", timedelta(milliseconds=40), False)
    expected = dims(QueryType="INSERT", Success="false")
    assert rec.metric("Database.Query.Duration") == {expected: [40.0]}
    assert rec.metric("Database.Query.Count") == {expected: [1.0]}
    (event,) = rec.events()
    assert event.name == "Database.Query.Failed"
    assert event.properties == {"QueryType": "INSERT", "Success": "false"}


def test_database_query_failure_event_names_the_table(rec: Recorded) -> None:
    rec.monitor.record_database_query("UPDATE", 0.001, False, "profiles")
    (event,) = rec.events("Database.Query.Failed")
    assert event.properties["TableName"] == "profiles"


# -- record_api_call ---------------------------------------------------------------------------


def test_api_call_success(rec: Recorded) -> None:
    rec.monitor.record_api_call("GetProfile", 0.05, True, 200, user_id=17)
    expected = dims(ApiName="GetProfile", StatusCode="200", Success="true")
    assert rec.metric("Api.Call.Duration") == {expected: [pytest.approx(50.0)]}
    assert rec.metric("Api.Call.Count") == {expected: [1.0]}
    assert rec.events() == []


@pytest.mark.parametrize(("status", "errors"), [(200, 0), (302, 0), (399, 0), (400, 1), (503, 1)])
def test_api_call_error_event_only_from_400(rec: Recorded, status: int, errors: int) -> None:
    rec.monitor.record_api_call("GetProfile", 0.01, status < 400, status, user_id="u-9")
    assert len(rec.events("Api.Call.Error")) == errors


def test_api_call_error_event_carries_the_user_but_metrics_do_not(rec: Recorded) -> None:
    rec.monitor.record_api_call("GetProfile", timedelta(seconds=2), False, 404, user_id=17)
    expected = dims(ApiName="GetProfile", StatusCode="404", Success="false")
    assert rec.metric("Api.Call.Duration") == {expected: [2000.0]}
    (event,) = rec.events("Api.Call.Error")
    assert event.properties == {
        "ApiName": "GetProfile",
        "StatusCode": "404",
        "Success": "false",
        "UserId": "17",
    }


def test_api_call_error_without_user(rec: Recorded) -> None:
    rec.monitor.record_api_call("GetProfile", 0.01, False, 500)
    (event,) = rec.events("Api.Call.Error")
    assert "UserId" not in event.properties


# -- record_personality_generation -----------------------------------------------------------


def test_personality_generation(rec: Recorded) -> None:
    rec.monitor.record_personality_generation(2.5, True, "claude-sonnet", 42, profile_id=7)
    assert rec.metric("Personality.Generation.Duration") == {
        dims(ModelType="claude-sonnet", Success="true"): [2500.0]
    }
    # The client's personality operation: its event and metrics.
    assert rec.metric("PersonalityOperation.Duration.PersonalityGeneration") == {(): [2500.0]}
    assert rec.metric("PersonalityOperation.Success.PersonalityGeneration") == {(): [1.0]}
    (event,) = rec.events("PersonalityOperation")
    assert event.properties["Operation"] == "PersonalityGeneration"
    assert event.properties["ModelType"] == "claude-sonnet"
    assert event.properties["UserId"] == "42"
    assert event.properties["ProfileId"] == "7"
    assert rec.events("Personality.Generation.SlowResponse") == []


def test_personality_generation_failure(rec: Recorded) -> None:
    rec.monitor.record_personality_generation(timedelta(seconds=1), False, "claude-haiku", 42)
    assert rec.metric("Personality.Generation.Duration") == {
        dims(ModelType="claude-haiku", Success="false"): [1000.0]
    }
    assert rec.metric("PersonalityOperation.Success.PersonalityGeneration") == {(): [0.0]}
    (event,) = rec.events("PersonalityOperation")
    assert "ProfileId" not in event.properties


@pytest.mark.parametrize(
    ("duration", "slow"),
    [(9.99, False), (10.0, False), (10.01, True), (timedelta(seconds=30), True)],
)
def test_slow_response_only_over_ten_seconds(
    rec: Recorded, duration: float | timedelta, slow: bool
) -> None:
    rec.monitor.record_personality_generation(duration, True, "claude-sonnet", "u-1", profile_id=3)
    events = rec.events("Personality.Generation.SlowResponse")
    assert len(events) == int(slow)
    if slow:
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
        assert events[0].measurements == {"Duration": pytest.approx(seconds)}
        assert events[0].properties == {
            "ModelType": "claude-sonnet",
            "Success": "true",
            "UserId": "u-1",
            "ProfileId": "3",
        }


def test_slow_threshold_is_configurable(rec: Recorded) -> None:
    monitor = PerformanceMonitor(
        rec.client, rec.clock, slow_generation_threshold=timedelta(seconds=2)
    )
    monitor.record_personality_generation(1.5, True, "m", 1)
    monitor.record_personality_generation(2.5, True, "m", 1)
    (event,) = rec.events("Personality.Generation.SlowResponse")
    assert event.measurements == {"Duration": 2.5}


def test_no_user_or_profile_dimension_anywhere(rec: Recorded) -> None:
    with rec.monitor.operation("Generate", {"UserId": "1", "ProfileId": "2"}):
        pass
    rec.monitor.record_database_query("SELECT", 0.1, False, "users")
    rec.monitor.record_api_call("Chat", 0.1, False, 500, user_id=5)
    rec.monitor.record_personality_generation(11, False, "m", 5, profile_id=6)
    names = {name for d in rec.all_dims() for name, _ in d}
    assert names
    assert not names & {"UserId", "ProfileId"}
