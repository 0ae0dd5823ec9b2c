"""What ``digitalme alerts check`` and ``digitalme alerts test`` do (the CLI only parses options).

``check`` validates a rule file and, when the telemetry store can be read,
prints what each rule evaluates to now from the store's recent 10 s buckets
(all instances merged). ``test`` runs rule unit tests (:mod:`.rule_tests`).
Both return an exit code: 0 valid (or all tests passed), 1 otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from digitalme.monitoring.alerts.errors import RuleFileError
from digitalme.monitoring.alerts.evaluation import (
    Sample,
    StaticSource,
    WindowReader,
    bucket_range,
    evaluate_rule,
)
from digitalme.monitoring.alerts.rule_tests import RuleTestError, load_tests, run_tests
from digitalme.monitoring.alerts.rulefile import load_rule_file
from digitalme.monitoring.alerts.rules import Aggregation, AlertRule
from digitalme.monitoring.durations import format_duration
from digitalme.monitoring.telemetry.sketch import Bucket
from digitalme.settings import Settings

if TYPE_CHECKING:
    from digitalme.monitoring.storage.queries import TelemetryQueries

__all__ = ["check_rules", "describe_condition", "run_rule_tests"]

Echo = Callable[..., None]
RESOLUTION = 10  # the store's finest buckets


def describe_condition(rule: AlertRule) -> str:
    """``p95(http.server.duration{route=~x}) > 2000 over 5m``."""

    def selector(metric: str, filters: Mapping[str, str]) -> str:
        inner = ",".join(
            f"{label}{spec if spec[:1] in '=!' else '=' + spec}" for label, spec in filters.items()
        )
        return f"{metric}{{{inner}}}" if inner else metric

    what = f"{rule.aggregation}({selector(rule.metric_name, rule.filters)})"
    if rule.aggregation is Aggregation.RATIO and rule.denominator is not None:
        top = selector(rule.metric_name, rule.filters)
        bottom = selector(rule.denominator_metric, rule.denominator.filters)
        what = f"{rule.ratio_of}({top}) / {rule.ratio_of}({bottom})"
    by = f" by ({', '.join(rule.group_by)})" if rule.group_by else ""
    return (
        f"{what}{by} {rule.operator} {rule.threshold:g} "
        f"over {format_duration(rule.evaluation_window)}"
    )


def _load(path: Path, settings: Settings, echo: Echo) -> list[AlertRule] | None:
    try:
        return load_rule_file(path, max_window=float(settings.telemetry.live_window_seconds))
    except RuleFileError as exc:
        echo(f"digitalme: {exc}", err=True)
        return None


def check_rules(path: Path, settings: Settings, echo: Echo) -> int:
    """Validate ``path`` and show each rule's current value from the store."""
    rules = _load(path, settings, echo)
    if rules is None:
        return 1
    echo(f"{path}: {len(rules)} rule{'s' if len(rules) != 1 else ''}, valid")
    for rule in rules:
        state = "" if rule.enabled else " (disabled)"
        echo(f"  {rule.id} [{rule.severity}]{state}: {describe_condition(rule)}")
    if not rules:
        return 0
    parsed = make_url(settings.telemetry_store_url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        echo("no telemetry store yet: nothing to evaluate", err=True)
        return 0
    asyncio.run(_show_current_values(rules, settings, echo))
    return 0


async def _show_current_values(rules: Sequence[AlertRule], settings: Settings, echo: Echo) -> None:
    from digitalme.monitoring.storage.engine import create_engine
    from digitalme.monitoring.storage.queries import TelemetryQueries

    engine = create_engine(settings.telemetry_store_url)
    try:
        queries = TelemetryQueries(engine)
        now = time.time()
        echo(f"current values (telemetry store, {time.strftime('%H:%M:%S')}):")
        for rule in rules:
            source = StaticSource(RESOLUTION)
            first, last, _ = bucket_range(rule.evaluation_window, now, RESOLUTION)
            metrics = {rule.metric_name}
            if rule.aggregation is Aggregation.RATIO:
                metrics.add(rule.denominator_metric)
            for metric in metrics:
                source.by_name[metric] = await _stored(queries, metric, first, last)
            reader = WindowReader()
            reader.begin(source, now)
            _print_samples(rule, evaluate_rule(rule, reader), echo)
    except Exception as exc:  # an unreachable or unmigrated store: say so, the file is valid
        echo(f"telemetry store not readable ({type(exc).__name__}): nothing evaluated", err=True)
    finally:
        await engine.dispose()


async def _stored(
    queries: TelemetryQueries, metric: str, first: float, last: float
) -> list[tuple[object, Mapping[str, str], Mapping[float, Bucket]]]:
    """One merged bucket per series of ``metric`` over the window, placed at ``last``."""
    dimensions = sorted({name for dims in await queries.series(metric) for name in dims})
    found = await queries.metric_window(
        metric, first, last + RESOLUTION, group_by=dimensions, resolution=RESOLUTION
    )
    series: list[tuple[object, Mapping[str, str], Mapping[float, Bucket]]] = []
    for dims, bucket in found:
        labels = {name: value for name, value in dims.items() if value != ""}
        series.append((tuple(sorted(labels.items())), labels, {last: bucket}))
    return series


def _print_samples(rule: AlertRule, samples: Sequence[Sample], echo: Echo) -> None:
    if not samples:
        echo(f"  {rule.id}: no data")
        return
    for sample in sorted(samples, key=lambda s: sorted(s.labels.items())):
        group = ",".join(f"{k}={v}" for k, v in sample.labels.items())
        name = f"{rule.id}{{{group}}}" if group else rule.id
        if sample.value is None or sample.points < rule.min_data_points:
            verdict = f"not enough data ({sample.points} < {rule.min_data_points} values)"
            shown = "-" if sample.value is None else f"{sample.value:.6g}"
        else:
            verdict = "BREACHING" if rule.breaches(sample.value) else "ok"
            shown = f"{sample.value:.6g}"
        echo(f"  {name}: {shown} ({rule.operator} {rule.threshold:g}): {verdict}")


def run_rule_tests(rules_path: Path, tests_path: Path, settings: Settings, echo: Echo) -> int:
    """Run the rule unit tests in ``tests_path`` against ``rules_path``."""
    rules = _load(rules_path, settings, echo)
    if rules is None:
        return 1
    try:
        cases = load_tests(tests_path.read_text(encoding="utf-8"), rules)
    except (OSError, UnicodeDecodeError) as exc:
        echo(f"digitalme: {tests_path}: cannot be read ({type(exc).__name__})", err=True)
        return 1
    except RuleTestError as exc:
        echo(f"digitalme: {tests_path}: {exc}", err=True)
        return 1
    results = asyncio.run(run_tests(cases, rules, resolution=settings.telemetry.bucket_seconds))
    for result in results:
        echo(f"{'PASS' if result.passed else 'FAIL'}  {result.name}")
        for failure in result.failures:
            echo(f"      {failure}")
    failed = sum(not result.passed for result in results)
    echo(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0
