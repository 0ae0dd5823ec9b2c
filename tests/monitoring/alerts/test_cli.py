"""``digitalme alerts check`` and ``digitalme alerts test`` through typer's runner."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digitalme.cli import app
from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket

RULES = """
rules:
  - id: slow_route
    name: Slow route
    metric_name: http.server.duration
    aggregation: p95
    operator: ">"
    threshold: 1000
    evaluation_window: 1m
    min_duration: 30s
    group_by: [route]
  - id: errors
    name: Errors
    metric_name: http.server.duration
    filters: {status_code: "=~5.."}
    aggregation: ratio
    denominator: {}
    operator: ">"
    threshold: 0.1
    evaluation_window: 1m
"""

TESTS = """
tests:
  - name: slow route goes pending then fires
    input_series:
      - metric: http.server.duration
        labels: {route: "GET /x", status_code: "200"}
        values: "100 2000x12"
      - metric: http.server.duration
        labels: {route: "GET /y", status_code: "500"}
        values: "100+10x12"
    alert_rule_test:
      - eval_time: 20s
        rule: slow_route
        exp_alerts: [{labels: {route: "GET /x"}, state: pending}]
      - eval_time: 50s
        rule: slow_route
        exp_alerts: [{labels: {route: "GET /x"}, value: 2000}]
      - eval_time: 50s
        rule: errors
        exp_alerts: [{value: 0.5}]
  - name: quiet
    input_series:
      - metric: http.server.duration
        labels: {route: "GET /x", status_code: "200"}
        values: [10, [10, 10], null, _]
    alert_rule_test:
      - eval_time: 1m
        rule: slow_route
        exp_alerts: []
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("DIGITALME_CONFIG",):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "config.yaml").write_text(f"server:\n  data_dir: {tmp_path / 'var'}\n")
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "tests.yaml").write_text(TESTS)
    return tmp_path


def run(workdir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [*args, "--config", str(workdir / "config.yaml")])
    return result.exit_code, result.stdout, result.stderr


def test_check_a_valid_file_without_a_store(workdir: Path) -> None:
    code, out, err = run(workdir, "alerts", "check", str(workdir / "rules.yaml"))
    assert code == 0
    assert "2 rules, valid" in out
    assert "slow_route [Medium]: p95(http.server.duration) by (route) > 1000 over 1m" in out
    assert "no telemetry store yet" in err


def test_check_an_invalid_file(workdir: Path) -> None:
    path = workdir / "bad.yaml"
    path.write_text(RULES.replace('operator: ">"\n    threshold: 0.1', "threshold: 0.1"))
    code, _, err = run(workdir, "alerts", "check", str(path))
    assert code == 1
    assert err.strip() == f"digitalme: {path}: rules[1] (id 'errors'): operator: Field required"


def test_check_shows_current_values_from_the_store(workdir: Path) -> None:
    url = f"sqlite+aiosqlite:///{workdir / 'var' / 'telemetry.db'}"
    now = time.time()

    async def record() -> None:
        store = await TelemetryStore.open(url)
        slow, failed = Bucket(now - now % 10, 10), Bucket(now - now % 10, 10)
        slow.add_many([1500.0] * 5)
        failed.add_many([10.0] * 5)
        route = ("route", "GET /x")
        batch = TelemetryBatch(
            buckets=[
                (SeriesKey("http.server.duration", (route, ("status_code", "200"))), slow),
                (SeriesKey("http.server.duration", (route, ("status_code", "503"))), failed),
            ],
            instance="test",
        )
        try:
            await store.write(batch)
        finally:
            await store.close()

    asyncio.run(record())
    code, out, _ = run(workdir, "alerts", "check", str(workdir / "rules.yaml"))
    assert code == 0
    # the p95 of five 10 ms and five 1500 ms requests, within the sketch's 1 %
    assert re.search(r"slow_route\{route=GET /x\}: 1[45]\d\d(\.\d+)? \(> 1000\): BREACHING", out)
    assert "errors: 0.5 (> 0.1): BREACHING" in out


def test_rule_tests_pass(workdir: Path) -> None:
    code, out, _ = run(
        workdir, "alerts", "test", str(workdir / "rules.yaml"), str(workdir / "tests.yaml")
    )
    assert code == 0, out
    assert out.splitlines() == [
        "PASS  slow route goes pending then fires",
        "PASS  quiet",
        "2 passed, 0 failed",
    ]


def test_rule_tests_fail_with_what_differs(workdir: Path) -> None:
    (workdir / "tests.yaml").write_text(TESTS.replace("state: pending", "state: firing"))
    code, out, _ = run(
        workdir, "alerts", "test", str(workdir / "rules.yaml"), str(workdir / "tests.yaml")
    )
    assert code == 1
    assert "FAIL  slow route goes pending then fires" in out
    expected = "expected ['firing {route=GET /x}'], got ['pending {route=GET /x} value=2000']"
    assert f"at 20s, rule slow_route: {expected}" in out
    assert "1 passed, 1 failed" in out


def test_a_bad_tests_file(workdir: Path) -> None:
    (workdir / "tests.yaml").write_text(TESTS.replace("rule: errors", "rule: nope"))
    code, _, err = run(
        workdir, "alerts", "test", str(workdir / "rules.yaml"), str(workdir / "tests.yaml")
    )
    assert code == 1
    assert "alert_rule_test[2].rule: no rule 'nope' in the rule file" in err


def test_the_readme_examples_are_valid_and_their_tests_pass(workdir: Path) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()

    def block(marker: str) -> str:
        start = readme.index(marker)
        return readme[start : readme.index("```", start)]

    (workdir / "web.yaml").write_text(block("# rules/web.yaml"))
    (workdir / "webtests.yaml").write_text(block("# tests.yaml"))
    code, out, _ = run(
        workdir, "alerts", "test", str(workdir / "web.yaml"), str(workdir / "webtests.yaml")
    )
    assert code == 0, out
