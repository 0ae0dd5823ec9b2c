"""TelemetryClient: the plan's ``ITelemetryService`` in Python.

Every method is synchronous, never blocks and never raises into the caller: it
captures raw values and the current request context, and appends to the bounded
buffer (or, for metrics, to the series' pending values). Bad input is handled by
rule and counted under ``telemetry.dropped`` with a reason.

Request and dependency durations go to their series (``http.server.duration``,
``dependency.duration``) for every call, before sampling, so their counts and
percentiles are exact; then the sampling decision is made at once, and an item
sampled out is never buffered. Most items of a busy service are sampled out:
deciding here spares them the buffer, the pipeline and the garbage collector.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from datetime import datetime, timedelta

import structlog

from digitalme.monitoring.bus import EventBus
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.telemetry.buffer import ItemBuffer
from digitalme.monitoring.telemetry.context import current_context
from digitalme.monitoring.telemetry.items import (
    AnyItem,
    DependencyItem,
    EventItem,
    ExceptionItem,
    RequestItem,
    SecurityEventItem,
    Severity,
)
from digitalme.monitoring.telemetry.sampling import Sampler
from digitalme.monitoring.telemetry.series import MetricSeries, RejectReason, SeriesRegistry
from digitalme.monitoring.telemetry.users import ActiveUsers

log = structlog.get_logger("digitalme.telemetry")

REQUEST_DURATION = "http.server.duration"  # ms
REQUEST_DIMENSIONS = ("route", "status_code", "success")
DEPENDENCY_DURATION = "dependency.duration"  # ms
DEPENDENCY_DIMENSIONS = ("type", "target", "success")
MAX_CACHED_KEYS = 10_000  # duration series looked up by raw key; past it, resolved per call
CRITICAL_SECURITY_TOPIC = "security.critical"
SECURITY_TOPIC = "security.event"
MAX_STACK_CHARS = 8000

SECURITY_SEVERITIES: dict[str, Severity] = {
    "RateLimit": Severity.MEDIUM,
    "SqlInjection": Severity.CRITICAL,
    "XssScript": Severity.HIGH,
    "CommandInjection": Severity.CRITICAL,
    "PathTraversal": Severity.HIGH,
    "UnauthorizedAccess": Severity.HIGH,
    "AccountLockout": Severity.MEDIUM,
}
# The plan's critical types are also recorded as exceptions and published at once.
CRITICAL_SECURITY_TYPES = frozenset({"SqlInjection", "CommandInjection", "UnauthorizedAccess"})

Duration = float | timedelta  # seconds


def security_severity(event_type: str) -> Severity:
    """The plan's severity for a security event type (anything else is Low)."""
    return SECURITY_SEVERITIES.get(event_type, Severity.LOW)


def _ms(duration: Duration) -> float:
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
    return seconds * 1000.0


def _epoch(start: float | datetime) -> float:
    return start.timestamp() if isinstance(start, datetime) else float(start)


class TelemetryClient:
    """Records requests, dependencies, exceptions, metrics and events."""

    def __init__(
        self,
        *,
        clock: Clock,
        buffer: ItemBuffer,
        registry: SeriesRegistry,
        sampler: Sampler | None = None,
        bus: EventBus | None = None,
        users: ActiveUsers | None = None,
        strict: bool = False,
    ) -> None:
        self._clock = clock
        self.users = users
        self._buffer = buffer
        self._registry = registry
        self.sampler = sampler or Sampler()
        self._raw = registry.raw
        self._durations: dict[tuple[object, ...], MetricSeries] = {}
        self._bus = bus
        self.strict = strict  # tests: internal errors raise instead of being counted
        self.internal_errors = 0

    # -- metrics (the hot path) ------------------------------------------------

    def track_metric(
        self, name: str, value: float, properties: Mapping[str, object] | None = None
    ) -> None:
        """Add one value to the series ``name`` + ``properties`` (its dimensions)."""
        try:
            series = self._raw.get((name, tuple(properties.items()) if properties else None))
        except TypeError:  # an unhashable dimension value: take the slow path
            series = None
        try:
            if value - value != 0:  # NaN and infinities; non-numbers raise TypeError
                self._buffer.dropped[f"rejected:{RejectReason.NOT_FINITE}"] += 1
                return
        except TypeError:
            self._buffer.dropped[f"rejected:{RejectReason.NOT_A_NUMBER}"] += 1
            return
        if series is None:
            resolved = self._resolve(name, properties)
            if resolved is None:
                return
            series = resolved
        series.pending.append(value)

    def _resolve(self, name: str, properties: Mapping[str, object] | None) -> MetricSeries | None:
        try:
            resolved = self._registry.resolve(name, properties)
        except Exception:
            self.report_internal_error("track_metric")
            return None
        if isinstance(resolved, RejectReason):
            self._buffer.dropped[f"rejected:{resolved}"] += 1
            return None
        return resolved

    def _duration(
        self,
        metric: str,
        dimensions: tuple[str, str, str],
        labels: tuple[object, object, bool],
        value: float,
    ) -> None:
        """Append a duration to its series, looked up by the raw label values."""
        if value - value != 0:  # NaN or infinite: the item keeps it, the series does not
            return
        raw = (metric, *labels)
        series = self._durations.get(raw)
        if series is None:
            series = self._resolve(metric, dict(zip(dimensions, labels, strict=True)))
            if series is None:
                return
            if len(self._durations) < MAX_CACHED_KEYS:
                self._durations[raw] = series
        series.pending.append(value)

    def _submit(self, item: AnyItem) -> None:
        """Buffer the item unless sampling drops it (the decision also sets its weight)."""
        if self.sampler.keep(item, self._clock.time()):
            self._buffer.submit(item)

    # -- items -------------------------------------------------------------------

    def track_request(
        self,
        name: str,
        start_time: float | datetime,
        duration: Duration,
        response_code: int,
        success: bool,
        properties: Mapping[str, object] | None = None,
    ) -> None:
        """A served request, named by its route template."""
        try:
            duration_ms = _ms(duration)
            status_code = int(response_code)
            ok = bool(success)
            self._duration(
                REQUEST_DURATION, REQUEST_DIMENSIONS, (name, status_code, ok), duration_ms
            )
            context = current_context.get()
            now = self._clock.time()
            if self.users is not None and context is not None and context.user_id is not None:
                self.users.add(context.user_id, now)  # every request: before sampling
            weight = self.sampler.weight(context, now)
            if not weight:
                return  # the common case under load: nothing more to build
            self._buffer.submit(
                RequestItem(
                    time=_epoch(start_time),
                    context=context,
                    properties=dict(properties or {}),
                    weight=weight,
                    name=name,
                    duration_ms=duration_ms,
                    status_code=status_code,
                    success=ok,
                )
            )
        except Exception:
            self.report_internal_error("track_request")

    def track_dependency(
        self,
        dependency_type: str,
        name: str,
        data: str,
        start_time: float | datetime,
        duration: Duration,
        success: bool,
        *,
        target: str = "",
        result_code: str | int = "",
        properties: Mapping[str, object] | None = None,
    ) -> None:
        """An outgoing call (HTTP, SQL, Redis); ``data`` is redacted off the path."""
        try:
            duration_ms = _ms(duration)
            ok = bool(success)
            self._duration(
                DEPENDENCY_DURATION,
                DEPENDENCY_DIMENSIONS,
                (dependency_type, target, ok),
                duration_ms,
            )
            context = current_context.get()
            weight = self.sampler.weight(context, self._clock.time())
            if not weight:
                return
            self._buffer.submit(
                DependencyItem(
                    time=_epoch(start_time),
                    context=context,
                    properties=dict(properties or {}),
                    weight=weight,
                    type=dependency_type,
                    target=target,
                    name=name,
                    data=str(data),
                    duration_ms=duration_ms,
                    success=ok,
                    result_code=str(result_code),
                )
            )
        except Exception:
            self.report_internal_error("track_dependency")

    def track_exception(
        self,
        exception: BaseException,
        properties: Mapping[str, object] | None = None,
        *,
        severity: Severity = Severity.HIGH,
    ) -> None:
        """An exception with its type, message and stack (redacted off the path)."""
        try:
            stack = "".join(traceback.format_exception(exception))[-MAX_STACK_CHARS:]
            self._buffer.submit(
                ExceptionItem(
                    time=self._clock.time(),
                    context=current_context.get(),
                    properties=dict(properties or {}),
                    type=type(exception).__qualname__,
                    message=str(exception),
                    stack=stack,
                    severity=severity,
                )
            )
        except Exception:
            self.report_internal_error("track_exception")

    def track_event(
        self,
        name: str,
        properties: Mapping[str, object] | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        """A custom event with optional measurements."""
        try:
            if not isinstance(name, str) or not name.strip():
                self._buffer.dropped[f"rejected:{RejectReason.EMPTY_NAME}"] += 1
                return
            self._submit(
                EventItem(
                    time=self._clock.time(),
                    context=current_context.get(),
                    properties=dict(properties or {}),
                    name=name,
                    measurements={k: float(v) for k, v in (metrics or {}).items()},
                )
            )
        except Exception:
            self.report_internal_error("track_event")

    def track_user_activity(
        self, user_id: int | str, activity: str, properties: Mapping[str, object] | None = None
    ) -> None:
        """A user action: a ``UserActivity`` event and a ``UserActivity.Count`` metric.

        The metric's only dimension is the activity: user ids are unbounded, so
        they stay on the event, not in a series.
        """
        merged = {**(properties or {}), "UserId": str(user_id), "Activity": activity}
        self.track_event("UserActivity", merged)
        self.track_metric("UserActivity.Count", 1.0, {"Activity": activity})

    def track_security_event(
        self,
        event_type: str,
        details: str,
        user_id: int | str | None = None,
        *,
        client_ip: str | None = None,
        properties: Mapping[str, object] | None = None,
    ) -> None:
        """A security event with the plan's severity; critical ones are also exceptions
        and are published on ``security.critical`` at once for the alert engine."""
        try:
            severity = security_severity(event_type)
            props = {**(properties or {}), "Source": "DigitalMe.Security"}
            item = SecurityEventItem(
                time=self._clock.time(),
                context=current_context.get(),
                properties=props,
                event_type=event_type,
                severity=severity,
                details=details,
                client_ip=client_ip,
                user_id=None if user_id is None else str(user_id),
            )
            self._buffer.submit(item)
            self.track_metric("Security.Events", 1.0, {"EventType": event_type})
            if event_type in CRITICAL_SECURITY_TYPES:
                self._buffer.submit(
                    ExceptionItem(
                        time=item.time,
                        context=item.context,
                        properties=dict(props),
                        type="SecurityException",
                        message=f"Critical security event: {event_type} - {details}",
                        severity=Severity.CRITICAL,
                    )
                )
            if self._bus is not None:
                self._bus.publish(SECURITY_TOPIC, item)
                if event_type in CRITICAL_SECURITY_TYPES:
                    self._bus.publish(CRITICAL_SECURITY_TOPIC, item)
        except Exception:
            self.report_internal_error("track_security_event")

    def track_personality_operation(
        self,
        operation: str,
        duration: Duration,
        success: bool,
        user_id: int | str,
        properties: Mapping[str, object] | None = None,
    ) -> None:
        """The plan's personality operation: an event plus duration and success metrics."""
        duration_ms = _ms(duration)
        merged = {
            **(properties or {}),
            "Operation": operation,
            "UserId": str(user_id),
            "Success": "true" if success else "false",
            "Duration": f"{duration_ms:.2f}",
        }
        self.track_event("PersonalityOperation", merged)
        self.track_metric(f"PersonalityOperation.Duration.{operation}", duration_ms)
        self.track_metric(f"PersonalityOperation.Success.{operation}", 1.0 if success else 0.0)

    def report_internal_error(self, where: str) -> None:
        self.internal_errors += 1
        if self.strict:
            raise
        log.exception("telemetry_internal_error", where=where)
