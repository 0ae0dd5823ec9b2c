"""PerformanceMonitor: the plan's ``PerformanceMonitoringService`` in Python.

It sits on top of :class:`~.client.TelemetryClient` and gives the host one way
to time an operation and three helpers with the plan's metric names:

* :meth:`PerformanceMonitor.operation` returns an :class:`OperationScope`, usable
  as ``with``, ``async with`` and as a decorator of sync and async functions.
  Unlike the plan's ``OperationScope`` it records success, and a body that
  raises is recorded as failed (the exception propagates unchanged).
* :meth:`~PerformanceMonitor.record_database_query`,
  :meth:`~PerformanceMonitor.record_api_call` and
  :meth:`~PerformanceMonitor.record_personality_generation`.

Where this departs from the plan, and why:

* The plan names one metric and one event per operation
  (``Operation.{name}.Duration``, ``Operation.{name}.Completed``) and puts the
  caller's properties on the metric as dimensions. Here there is one metric,
  ``Operation.Duration`` (ms), with the bounded dimensions ``Operation`` and
  ``Success``, and one event, ``Operation.Completed``, whose properties carry the
  caller's properties (which may be unbounded: user ids, profile ids) plus
  ``Operation``, ``Success``, on failure ``ErrorType`` (the body raised) or
  ``FailureReason`` (given to :meth:`OperationScope.fail`), and
  ``ParentOperation`` when nested in another scope; its ``DurationMs``
  measurement is the duration. One name per concept keeps the series count
  bounded and makes "all operations" one query. A cancelled body
  (``CancelledError``) counts as failed too: the operation did not complete.
* User and profile ids are never metric dimensions (unbounded cardinality):
  they go on events only.

Durations come from ``clock.monotonic()`` so tests drive them with a fake clock.
Telemetry problems never raise into the caller (unless the client is
``strict``, as tests make it); the caller's own exceptions always propagate.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar, Token
from datetime import timedelta
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import structlog

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.telemetry.client import Duration, TelemetryClient


def _log() -> Any:
    # Resolved per call (only on rare paths) so that logging configured later, or
    # structlog.testing.capture_logs, is honoured despite logger caching.
    return structlog.get_logger("digitalme.telemetry.performance")


F = TypeVar("F", bound=Callable[..., Any])

OPERATION_DURATION = "Operation.Duration"
OPERATION_COMPLETED = "Operation.Completed"
DATABASE_QUERY_DURATION = "Database.Query.Duration"
DATABASE_QUERY_COUNT = "Database.Query.Count"
DATABASE_QUERY_FAILED = "Database.Query.Failed"
API_CALL_DURATION = "Api.Call.Duration"
API_CALL_COUNT = "Api.Call.Count"
API_CALL_ERROR = "Api.Call.Error"
PERSONALITY_GENERATION = "PersonalityGeneration"
PERSONALITY_GENERATION_DURATION = "Personality.Generation.Duration"
PERSONALITY_GENERATION_SLOW = "Personality.Generation.SlowResponse"
DEFAULT_SLOW_GENERATION_SECONDS = 10.0

_current_operation: ContextVar[OperationScope | None] = ContextVar(
    "digitalme_current_operation", default=None
)


def current_operation() -> OperationScope | None:
    """The innermost operation scope running in this context, if any.

    A function decorated with ``@monitor.operation(...)`` uses it to reach its
    own scope, to add properties or to call :meth:`OperationScope.fail`.
    """
    return _current_operation.get()


def _seconds(duration: Duration) -> float:
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    return float(duration)


def _flag(value: bool) -> str:
    # The series registry spells booleans this way; events use the same spelling.
    return "true" if value else "false"


class OperationScope:
    """Times one operation and records its duration and success when it ends.

    Single-use as a context manager; as a decorator it opens a fresh scope (with
    a copy of its properties) for every call, so one decorated function can run
    concurrently. A scope is failed when its body raises or when :meth:`fail`
    was called; :attr:`properties` may be extended while the body runs.
    """

    __slots__ = (
        "_failed",
        "_monitor",
        "_start",
        "_token",
        "duration",
        "name",
        "properties",
        "success",
    )

    def __init__(
        self,
        monitor: PerformanceMonitor,
        name: str,
        properties: Mapping[str, object] | None = None,
    ) -> None:
        self._monitor = monitor
        self.name = name
        self.properties: dict[str, object] = dict(properties or {})
        self._start: float | None = None
        self._failed = False
        self._token: Token[OperationScope | None] | None = None
        self.duration: float | None = None  # seconds, once ended
        self.success: bool | None = None  # once ended

    def set_property(self, name: str, value: object) -> None:
        """Add a property to the ``Operation.Completed`` event."""
        self.properties[name] = value

    def fail(self, reason: str | None = None) -> None:
        """Record this operation as failed even if its body returns normally."""
        self._failed = True
        if reason is not None:
            self.properties["FailureReason"] = reason

    # -- context manager ---------------------------------------------------------

    def __enter__(self) -> Self:
        self._begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end(exc)  # returns None: the body's exception propagates unchanged

    async def __aenter__(self) -> Self:
        self._begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end(exc)

    # -- decorator ---------------------------------------------------------------

    def __call__(self, func: F) -> F:
        """Time every call of ``func`` (sync or async) in a scope of its own."""
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            what = getattr(func, "__qualname__", repr(func))
            raise TypeError(f"cannot time generator function {what} as one operation")
        monitor, name, properties = self._monitor, self.name, self.properties

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with OperationScope(monitor, name, properties):
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with OperationScope(monitor, name, properties):
                return func(*args, **kwargs)

        return cast(F, wrapper)

    # -- internals ---------------------------------------------------------------

    def _begin(self) -> None:
        if self._start is not None:
            raise RuntimeError(
                f"operation scope {self.name!r} was already entered; "
                "call monitor.operation() again for a new one"
            )
        parent = _current_operation.get()
        if parent is not None:
            self.properties.setdefault("ParentOperation", parent.name)
        self._token = _current_operation.set(self)
        self._start = self._monitor.clock.monotonic()

    def _end(self, exc: BaseException | None) -> None:
        if self._token is not None:
            # ValueError: ended in another context (a scope handed to another task).
            with suppress(ValueError):
                _current_operation.reset(self._token)
            self._token = None
        with self._monitor.guarded("operation"):
            start = self._start if self._start is not None else self._monitor.clock.monotonic()
            self.duration = max(0.0, self._monitor.clock.monotonic() - start)
            self.success = exc is None and not self._failed
            if exc is not None:
                self.properties["ErrorType"] = type(exc).__qualname__
            self._monitor.record_operation(self.name, self.duration, self.success, self.properties)


class PerformanceMonitor:
    """Operation timing and the plan's performance metrics, over a TelemetryClient."""

    def __init__(
        self,
        client: TelemetryClient,
        clock: Clock,
        *,
        slow_generation_threshold: Duration = DEFAULT_SLOW_GENERATION_SECONDS,
    ) -> None:
        self.client = client
        self.clock = clock
        self.slow_generation_threshold = _seconds(slow_generation_threshold)

    def operation(
        self, name: str, properties: Mapping[str, object] | None = None
    ) -> OperationScope:
        """A scope timing ``name``: ``with``, ``async with`` or ``@monitor.operation(name)``."""
        return OperationScope(self, name, properties)

    def record_operation(
        self,
        name: str,
        duration: Duration,
        success: bool,
        properties: Mapping[str, object] | None = None,
    ) -> None:
        """Record a finished operation (what a scope does when it ends)."""
        with self.guarded("record_operation"):
            duration_ms = _seconds(duration) * 1000.0
            flag = _flag(success)
            self.client.track_metric(
                OPERATION_DURATION, duration_ms, {"Operation": name, "Success": flag}
            )
            self.client.track_event(
                OPERATION_COMPLETED,
                {**(properties or {}), "Operation": name, "Success": flag},
                {"DurationMs": duration_ms},
            )

    def record_database_query(
        self,
        query_type: str,
        duration: Duration,
        success: bool,
        table_name: str | None = None,
    ) -> None:
        """``Database.Query.Duration`` (ms) and ``.Count``; ``.Failed`` event on failure."""
        with self.guarded("record_database_query"):
            dims = {"QueryType": query_type, "Success": _flag(success)}
            if table_name:
                dims["TableName"] = table_name
            self.client.track_metric(DATABASE_QUERY_DURATION, _seconds(duration) * 1000.0, dims)
            self.client.track_metric(DATABASE_QUERY_COUNT, 1.0, dims)
            if not success:
                self.client.track_event(DATABASE_QUERY_FAILED, dims)

    def record_api_call(
        self,
        api_name: str,
        duration: Duration,
        success: bool,
        status_code: int,
        user_id: int | str | None = None,
    ) -> None:
        """``Api.Call.Duration`` (ms) and ``.Count``; ``Api.Call.Error`` event when >= 400.

        The user is never a metric dimension (unbounded); it is on the error event.
        """
        with self.guarded("record_api_call"):
            dims = {"ApiName": api_name, "StatusCode": str(status_code), "Success": _flag(success)}
            self.client.track_metric(API_CALL_DURATION, _seconds(duration) * 1000.0, dims)
            self.client.track_metric(API_CALL_COUNT, 1.0, dims)
            if status_code >= 400:
                props: dict[str, object] = dict(dims)
                if user_id is not None and str(user_id):
                    props["UserId"] = str(user_id)
                self.client.track_event(API_CALL_ERROR, props)

    def record_personality_generation(
        self,
        duration: Duration,
        success: bool,
        model_type: str,
        user_id: int | str,
        profile_id: int | str | None = None,
    ) -> None:
        """A personality generation: the client's personality operation, a
        ``Personality.Generation.Duration`` metric (ModelType, Success) and, over
        the slow threshold, a ``Personality.Generation.SlowResponse`` event whose
        ``Duration`` measurement is in seconds (as in the plan)."""
        with self.guarded("record_personality_generation"):
            seconds = _seconds(duration)
            flag = _flag(success)
            props: dict[str, object] = {
                "ModelType": model_type,
                "Success": flag,
                "UserId": str(user_id),
            }
            if profile_id is not None:
                props["ProfileId"] = str(profile_id)
            self.client.track_personality_operation(
                PERSONALITY_GENERATION, seconds, success, user_id, props
            )
            self.client.track_metric(
                PERSONALITY_GENERATION_DURATION,
                seconds * 1000.0,
                {"ModelType": model_type, "Success": flag},
            )
            if seconds > self.slow_generation_threshold:
                self.client.track_event(PERSONALITY_GENERATION_SLOW, props, {"Duration": seconds})

    @contextmanager
    def guarded(self, where: str) -> Iterator[None]:
        """Count and log a telemetry error instead of raising it (raise if ``strict``)."""
        try:
            yield
        except Exception:
            self.client.internal_errors += 1
            if self.client.strict:
                raise
            _log().exception("performance_monitor_error", where=where)
