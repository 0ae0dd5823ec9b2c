"""Rule files and the settings' defaults: a bad one stops start-up with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from digitalme.monitoring.alerts import RuleFileError, load_rule_file, load_rules
from digitalme.monitoring.alerts.defaults import (
    DEFAULT_RULE_IDS,
    SLO_RULE_PREFIX,
    default_definitions,
)
from digitalme.settings import load_settings

GOOD = """
rules:
  - id: checkout_latency
    name: Slow checkout
    metric_name: http.server.duration
    filters: {route: "POST /api/checkout"}
    aggregation: p99
    operator: ">"
    threshold: 1500
    evaluation_window: 5m
  - id: errors
    name: Errors
    metric_name: http.server.duration
    filters: {status_code: "=~5.."}
    aggregation: ratio
    denominator: {}
    operator: ">"
    threshold: 0.02
"""

SLO_RULE_IDS = [
    f"{SLO_RULE_PREFIX}{tier}" for tier in ("page_fast", "page_slow", "ticket_fast", "ticket_slow")
]


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error(path: Path) -> RuleFileError:
    with pytest.raises(RuleFileError) as caught:
        load_rule_file(path, max_window=900)
    return caught.value


def test_a_good_file(tmp_path: Path) -> None:
    rules = load_rule_file(write(tmp_path, GOOD), max_window=900)
    assert [r.id for r in rules] == ["checkout_latency", "errors"]
    assert load_rule_file(write(tmp_path, "", "empty.yaml")) == []


def test_a_bad_rule_names_the_file_the_rule_and_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("threshold: 0.02", "threshold: lots"))
    found = error(path)
    assert str(found) == (
        f"{path}: rules[1] (id 'errors'): threshold: "
        "Input should be a valid number, unable to parse string as a number"
    )
    assert (found.index, found.rule_id, found.field) == (1, "errors", "threshold")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [\n", "invalid YAML at line"),
        ("- 1\n- 2\n", "must be a mapping with one key, 'rules'"),
        ("rules: {a: 1}\n", "'rules' must be a list"),
        ("groups: []\n", "must be a mapping with one key, 'rules'"),
        ("rules: [42]\n", "rules[0]: must be a mapping of rule fields"),
        (GOOD.replace("id: errors", "id: checkout_latency"), "another rule already has this id"),
        (GOOD.replace("5m", "1h"), "longer than the live window"),
    ],
)
def test_file_problems(tmp_path: Path, text: str, message: str) -> None:
    assert message in str(error(write(tmp_path, text)))


def test_a_missing_file(tmp_path: Path) -> None:
    assert "cannot be read" in str(error(tmp_path / "nope.yaml"))


def test_load_rules_joins_the_defaults_and_the_files(tmp_path: Path) -> None:
    settings = load_settings(alerting={"rule_files": [str(write(tmp_path, GOOD))]})
    ids = [rule.id for rule in load_rules(settings)]
    assert ids == [*DEFAULT_RULE_IDS, *SLO_RULE_IDS, "checkout_latency", "errors"]


def test_a_file_may_not_reuse_a_default_id(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("checkout_latency", "http_latency_p95"))
    settings = load_settings(alerting={"rule_files": [str(path)]})
    with pytest.raises(RuleFileError, match="already used by the default rules"):
        load_rules(settings)


def test_defaults_are_shipped_enabled_and_can_be_changed(tmp_path: Path) -> None:
    assert [d["id"] for d in default_definitions(load_settings())] == [
        *DEFAULT_RULE_IDS,
        *SLO_RULE_IDS,
    ]
    rules = {r.id: r for r in load_rules(load_settings())}
    assert all(rule.enabled for rule in rules.values())
    assert rules["http_latency_p95"].threshold == 2000
    assert str(rules["health_check_unhealthy"].severity) == "Critical"
    assert rules["health_check_unhealthy"].evaluation_window == 30  # 3 probes of 10 s

    changed = load_settings(
        alerting={
            "defaults": {
                "http_latency_p95": {"threshold": 3000, "evaluation_window": "10m"},
                "rate_limit_spike": {"enabled": False},
                "telemetry_dropped": {"repeat_interval": "1h", "severity": "low"},
            }
        },
        health={"probe_interval": 5},
    )
    rules = {r.id: r for r in load_rules(changed)}
    assert rules["http_latency_p95"].threshold == 3000
    assert rules["http_latency_p95"].evaluation_window == 600
    assert not rules["rate_limit_spike"].enabled
    assert rules["telemetry_dropped"].repeat_interval == 3600
    assert str(rules["telemetry_dropped"].severity) == "Low"
    assert rules["health_check_unhealthy"].evaluation_window == 15


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nope": {"threshold": 1}}, "alerting.defaults.nope: no default rule has this id"),
        (
            {"http_error_ratio": {"evaluation_window": "2h"}},
            "alerting.defaults.http_error_ratio: evaluation_window: 2h is longer",
        ),
        (
            {"http_latency_p95": {"clear_threshold": 5000}},
            "alerting.defaults.http_latency_p95: clear_threshold: must be at most threshold",
        ),
    ],
)
def test_bad_overrides_name_the_key(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        load_rules(load_settings(alerting={"defaults": overrides}))
    assert str(caught.value).startswith(message)
