"""Unit tests for rules, like ``promtool test rules``: given series, expected alerts.

A tests file (YAML):

.. code-block:: yaml

    interval: 10s                  # step between input values (default 10s)
    tests:
      - name: a slow route fires after a minute
        interval: 10s              # per test, optional
        evaluation_interval: 10s   # how often the engine ticks (default: interval)
        input_series:
          - metric: http.server.duration
            labels: {route: "GET /x", status_code: "200"}
            values: "100 100 2500x10"
          - metric: Security.Events
            labels: {EventType: RateLimit}
            values: [1, [1, 1, 1], null, 1]
        alert_rule_test:
          - eval_time: 1m
            rule: http_latency_p95
            exp_alerts:
              - labels: {route: "GET /x"}    # a subset of the alert's labels
                state: firing                # firing (default) or pending
                value: 2500                  # optional, within 1 %
          - eval_time: 10m
            rule: http_latency_p95
            exp_alerts: []

Each value is one recorded observation at ``start + i * interval`` (a list is
several observations in that step, ``null`` or ``_`` none). The expanding
notation of promtool is understood: ``a+bxn`` is ``a, a+b, ..., a+n*b``
(``a-bxn`` likewise), ``axn`` is ``a`` n+1 times, ``_xn`` is n empty steps.
Values go into a fresh live aggregator on a fake clock and the engine is run
over them; at each ``eval_time`` the active alerts of ``rule`` must be exactly
the expected ones (same count, each matching one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from digitalme.monitoring.alerts.engine import AlertEngine
from digitalme.monitoring.alerts.memory import InMemoryAlertStore
from digitalme.monitoring.alerts.model import Alert
from digitalme.monitoring.alerts.rules import AlertRule
from digitalme.monitoring.durations import format_duration, parse_duration
from digitalme.monitoring.telemetry.aggregation import Aggregator
from digitalme.monitoring.telemetry.series import SeriesRegistry
from digitalme.monitoring.telemetry.sinks import SeriesKey
from digitalme.settings import AlertingSettings

__all__ = ["CaseResult", "RuleTestError", "load_tests", "run_tests"]

START = datetime(2026, 1, 1, tzinfo=UTC)
MAX_STEPS = 100_000
VALUE_TOLERANCE = 0.01


class RuleTestError(ValueError):
    """The tests file itself is wrong; the message names the test and the key."""


class _Clock:
    """A clock the runner moves (the tests file's own time)."""

    def __init__(self) -> None:
        self.at = START.timestamp()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)

    def monotonic(self) -> float:
        return self.at

    def time(self) -> float:
        return self.at


@dataclass(frozen=True, slots=True)
class Series:
    metric: str
    labels: dict[str, str]
    steps: list[list[float]]


@dataclass(frozen=True, slots=True)
class Expected:
    labels: dict[str, str]
    state: str = "firing"
    value: float | None = None


@dataclass(frozen=True, slots=True)
class Check:
    eval_time: float
    rule: str
    expected: list[Expected]


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    interval: float
    evaluation_interval: float
    series: list[Series]
    checks: list[Check]


@dataclass(slots=True)
class CaseResult:
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def load_tests(text: str, rules: Sequence[AlertRule]) -> list[Case]:
    """Parse a tests file; raises :class:`RuleTestError`."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleTestError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("tests"), list):
        raise RuleTestError("must be a mapping with a 'tests' list")
    known = {rule.id for rule in rules}
    default_interval = _duration(document.get("interval", 10), "interval")
    return [
        _case(entry, index, default_interval, known)
        for index, entry in enumerate(document["tests"])
    ]


def _case(entry: Any, index: int, default_interval: float, known: set[str]) -> Case:
    where = f"tests[{index}]"
    if not isinstance(entry, dict):
        raise RuleTestError(f"{where}: must be a mapping")
    name = str(entry.get("name") or where)
    where = f"{where} ({name})"
    interval = _duration(entry.get("interval", default_interval), f"{where}.interval")
    if interval <= 0:
        raise RuleTestError(f"{where}.interval: must be longer than 0")
    every = _duration(entry.get("evaluation_interval", interval), f"{where}.evaluation_interval")
    if every <= 0:
        raise RuleTestError(f"{where}.evaluation_interval: must be longer than 0")
    series = []
    for number, item in enumerate(entry.get("input_series") or []):
        at = f"{where}.input_series[{number}]"
        if not isinstance(item, dict) or not isinstance(item.get("metric"), str):
            raise RuleTestError(f"{at}: needs 'metric' (and 'values')")
        labels = item.get("labels") or {}
        if not isinstance(labels, dict):
            raise RuleTestError(f"{at}.labels: must be a mapping")
        steps = _values(item.get("values"), f"{at}.values")
        series.append(Series(item["metric"], {str(k): str(v) for k, v in labels.items()}, steps))
    checks = []
    for number, item in enumerate(entry.get("alert_rule_test") or []):
        at = f"{where}.alert_rule_test[{number}]"
        if not isinstance(item, dict):
            raise RuleTestError(f"{at}: must be a mapping")
        rule_id = item.get("rule")
        if rule_id not in known:
            raise RuleTestError(f"{at}.rule: no rule {rule_id!r} in the rule file")
        expected = []
        for n, alert in enumerate(item.get("exp_alerts") or []):
            if not isinstance(alert, dict):
                raise RuleTestError(f"{at}.exp_alerts[{n}]: must be a mapping")
            state = str(alert.get("state", "firing"))
            if state not in ("firing", "pending"):
                raise RuleTestError(f"{at}.exp_alerts[{n}].state: firing or pending")
            value = alert.get("value")
            expected.append(
                Expected(
                    {str(k): str(v) for k, v in (alert.get("labels") or {}).items()},
                    state,
                    None if value is None else float(value),
                )
            )
        eval_time = _duration(item.get("eval_time"), f"{at}.eval_time")
        checks.append(Check(eval_time, str(rule_id), expected))
    if not checks:
        raise RuleTestError(f"{where}: needs at least one alert_rule_test")
    return Case(name, interval, every, series, checks)


def _duration(value: object, where: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise RuleTestError(f"{where}: {exc}") from None


def _values(spec: object, where: str) -> list[list[float]]:
    """Observations per step from the expanding notation or a list."""
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        spec = [spec]
    if isinstance(spec, str):
        steps: list[list[float]] = []
        for token in spec.split():
            steps.extend(_expand(token, where))
    elif isinstance(spec, list):
        steps = []
        for item in spec:
            if item is None or item == "_":
                steps.append([])
            elif isinstance(item, list):
                steps.append([_number(v, where) for v in item])
            else:
                steps.append([_number(item, where)])
    else:
        raise RuleTestError(f"{where}: a string like '1 2 3x5' or a list of numbers")
    if len(steps) > MAX_STEPS:
        raise RuleTestError(f"{where}: more than {MAX_STEPS} steps")
    return steps


def _expand(token: str, where: str) -> list[list[float]]:
    if token == "_":
        return [[]]
    if "x" not in token:
        return [[_number(token, where)]]
    head, _, times = token.rpartition("x")
    try:
        count = int(times)
    except ValueError:
        raise RuleTestError(f"{where}: {token!r} is not 'a+bxn', 'axn' or '_xn'") from None
    if count < 0 or count > MAX_STEPS:
        raise RuleTestError(f"{where}: {token!r}: n out of range")
    if head == "_":
        return [[] for _ in range(count)]
    for sign in ("+", "-"):
        start, found, step = head[1:].partition(sign)
        if found:
            first = _number(head[0] + start, where)
            delta = _number(step, where) * (1 if sign == "+" else -1)
            return [[first + i * delta] for i in range(count + 1)]
    value = _number(head, where)
    return [[value] for _ in range(count + 1)]


def _number(value: object, where: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RuleTestError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise RuleTestError(f"{where}: {value!r} is not finite")
    return number


async def run_tests(
    cases: Sequence[Case], rules: Sequence[AlertRule], *, resolution: int = 10
) -> list[CaseResult]:
    """Run each case on its own aggregator, engine and clock."""
    return [await _run(case, rules, resolution) for case in cases]


async def _run(case: Case, rules: Sequence[AlertRule], resolution: int) -> CaseResult:
    result = CaseResult(case.name)
    clock = _Clock()
    start = clock.at
    aggregator = Aggregator(SeriesRegistry(), resolution, 86400)
    engine = AlertEngine(
        rules,
        aggregator,
        clock,
        InMemoryAlertStore(),
        lambda _event, _rule, _fired: [],
        None,
        AlertingSettings(security_alerts=False),
    )
    observations: list[tuple[float, SeriesKey, list[float]]] = []
    for series in case.series:
        key = SeriesKey(series.metric, tuple(sorted(series.labels.items())))
        for index, values in enumerate(series.steps):
            if values:
                observations.append((index * case.interval, key, values))
    observations.sort(key=lambda item: item[0])
    checks = sorted(case.checks, key=lambda check: check.eval_time)
    end = checks[-1].eval_time
    ticks = math.floor(end / case.evaluation_interval + 1e-9)
    times = sorted(
        {round(i * case.evaluation_interval, 6) for i in range(ticks + 1)}
        | {check.eval_time for check in checks}
    )
    fed = 0
    for offset in times:
        clock.at = start + offset
        while fed < len(observations) and observations[fed][0] <= offset + 1e-9:
            at, key, values = observations[fed]
            for value in values:
                aggregator.observe(key, value, start + at)
            fed += 1
        await engine.evaluate()
        for check in checks:
            if abs(check.eval_time - offset) < 1e-9:
                result.failures += _compare(check, engine.active_alerts())
    return result


def _compare(check: Check, alerts: Sequence[Alert]) -> list[str]:
    found = [alert for alert in alerts if alert.rule_id == check.rule]
    unmatched = list(found)
    missing = []
    for expected in check.expected:
        match = next((a for a in unmatched if _matches(expected, a)), None)
        if match is None:
            missing.append(expected)
        else:
            unmatched.remove(match)
    if not missing and not unmatched:
        return []
    when = f"at {format_duration(check.eval_time)}, rule {check.rule}"
    return [
        f"{when}: expected {[_describe_expected(e) for e in check.expected]}, "
        f"got {[_describe(a) for a in found]}"
    ]


def _matches(expected: Expected, alert: Alert) -> bool:
    if str(alert.state) != expected.state:
        return False
    if any(alert.labels.get(k) != v for k, v in expected.labels.items()):
        return False
    if expected.value is not None:
        if alert.value is None:
            return False
        return math.isclose(alert.value, expected.value, rel_tol=VALUE_TOLERANCE)
    return True


def _group_text(labels: Mapping[str, str]) -> str:
    hidden = {"alertname", "severity", "category"}
    return "{" + ", ".join(f"{k}={v}" for k, v in labels.items() if k not in hidden) + "}"


def _describe_expected(expected: Expected) -> str:
    value = "" if expected.value is None else f" value={expected.value:g}"
    return f"{expected.state} {_group_text(expected.labels)}{value}"


def _describe(alert: Alert) -> str:
    value = "" if alert.value is None else f" value={alert.value:g}"
    return f"{alert.state} {_group_text(alert.labels)}{value}"
