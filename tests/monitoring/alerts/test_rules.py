"""Rule validation: every error names the field and the reason; templates; matchers; durations."""

from __future__ import annotations

from typing import Any

import pytest

from digitalme.monitoring.alerts import (
    Aggregation,
    NoDataMode,
    Operator,
    RuleValidationError,
    validate_rule,
)
from digitalme.monitoring.alerts.matchers import parse_matchers
from digitalme.monitoring.durations import format_duration, parse_duration
from monitoring.alerts.helpers import rule as make_rule

BASE: dict[str, Any] = {
    "id": "latency",
    "name": "Latency",
    "metric_name": "http.server.duration",
    "operator": ">",
    "threshold": 100,
}


def problems(**changes: Any) -> dict[str, str]:
    data = {**BASE, **changes}
    with pytest.raises(RuleValidationError) as caught:
        validate_rule({k: v for k, v in data.items() if v is not ...}, max_window=900)
    return {problem.field: problem.reason for problem in caught.value.problems}


def test_a_minimal_rule_has_the_documented_defaults() -> None:
    rule = validate_rule(BASE)
    assert rule.aggregation is Aggregation.AVG
    assert rule.evaluation_window == 300
    assert rule.min_data_points == 1
    assert rule.min_duration == 0
    assert rule.no_data is NoDataMode.OK
    assert rule.notification_channels is None
    assert rule.enabled


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"id": "has space"}, "id", "String should match pattern"),
        ({"id": "manual"}, "id", "reserved"),
        ({"name": ""}, "name", "at least 1 character"),
        ({"operator": ">>"}, "operator", "'>', '>=', '<', '<=', '==' or '!='"),
        ({"threshold": "high"}, "threshold", "valid number"),
        ({"threshold": float("nan")}, "threshold", "finite number"),
        ({"evaluation_window": "20m"}, "evaluation_window", "longer than the live window"),
        ({"evaluation_window": "5 minutes"}, "evaluation_window", "not a duration"),
        ({"evaluation_window": 0}, "evaluation_window", "longer than 0"),
        ({"min_duration": -1}, "min_duration", "non-negative"),
        ({"min_data_points": 0}, "min_data_points", "greater than or equal to 1"),
        ({"aggregation": "median"}, "aggregation", "'avg'"),
        ({"filters": {"status_code": "=~5..("}}, "filters", "status_code: invalid regex"),
        ({"aggregation": "ratio"}, "denominator", "required when aggregation is ratio"),
        ({"denominator": {}}, "denominator", "only used when aggregation is ratio"),
        ({"clear_threshold": 150}, "clear_threshold", "at most threshold"),
        ({"operator": "<", "clear_threshold": 50}, "clear_threshold", "at least threshold"),
        ({"operator": "==", "clear_threshold": 50}, "clear_threshold", "only for the operators"),
        ({"title_template": "{nope}"}, "title_template", "unknown field {nope}"),
        ({"title_template": "{value:.2q}"}, "title_template", "cannot be rendered"),
        ({"title_template": "{rule.__class__}"}, "title_template", "use one of"),
        ({"description_template": "{labels}"}, "description_template", "needs a label name"),
        ({"description_template": "{"}, "description_template", "not a valid template"),
        ({"labels": {"alertname": "x"}}, "labels", "set by the engine"),
        ({"notification_channels": ["Slack!"]}, "notification_channels", "not a channel name"),
        ({"group_by": ["route", "route"]}, "group_by", "twice"),
        ({"repeat_interval": 0}, "repeat_interval", "longer than 0"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"threshold": ...}, "threshold", "Field required"),
    ],
)
def test_validation_errors_name_the_field_and_the_reason(
    changes: dict[str, Any], field: str, reason: str
) -> None:
    found = problems(**changes)
    assert field in found, found
    assert reason in found[field]


def test_nested_fields_are_named_with_dots() -> None:
    found = problems(aggregation="ratio", denominator={"filters": {"x": "=~("}})
    assert "denominator.filters" in found


def test_all_problems_are_reported_at_once() -> None:
    found = problems(name="", operator="?", threshold="x")
    assert set(found) == {"name", "operator", "threshold"}


def test_operator_aliases_and_case_insensitive_enums() -> None:
    rule = validate_rule(
        {**BASE, "operator": "GreaterThan", "severity": "critical", "category": "security"}
    )
    assert rule.operator is Operator.GT
    assert str(rule.severity) == "Critical"
    assert str(rule.category) == "Security"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("PT5M", 300.0),
        ("P1DT2H", 93600.0),
        ("90", 90.0),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 m", "m5", "PT", "1x", True, [1], "-5s"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0.25, 30, 300, 5400, 90061)] == [
        "250ms",
        "30s",
        "5m",
        "1h30m",
        "1d1h1m1s",
    ]


def test_templates_render_value_threshold_labels_and_rule_fields() -> None:
    rule = make_rule(
        title_template="{rule.name} on {labels[route]}",
        description_template="{value:.1f} {operator} {threshold} ({metric}, {aggregation}) {count}",
    )
    assert rule.title(12.345, {"route": "GET /x"}) == "Rule one on GET /x"
    assert rule.message(12.345, {}, 3) == "12.3 > 10 (m, avg) 3"
    assert rule.message(None, {}) == "no data > 10 (m, avg) 1"
    assert rule.title(1.0, {}) == "Rule one on "  # a missing label is empty


def test_matchers_follow_prometheus_semantics() -> None:
    matchers = parse_matchers(
        {"status_code": "=~5..", "route": "!=GET /health", "method": "POST", "env": "!~prod.*"}
    )
    assert all(
        m.matches({"status_code": "503", "route": "GET /x", "method": "POST"}) for m in matchers
    )
    status = matchers[0]
    assert not status.matches({"status_code": "5030"})  # anchored
    assert not status.matches({})  # a missing label is ""
    assert matchers[1].matches({})
    assert parse_matchers({"x": "==y"})[0].value == "=y"


def test_a_rule_serialises_to_data_that_validates_again() -> None:
    rule = make_rule(
        aggregation="ratio", denominator={"filters": {"a": "b"}}, filters={"s": "=~5.."}
    )
    again = validate_rule(rule.definition(), max_window=900)
    assert again == rule
