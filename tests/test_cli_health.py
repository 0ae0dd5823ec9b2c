"""`digitalme health`: the checks run locally or read from a running instance; exit codes 0/1/2."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner, Result

from accounts import JWT_SECRET
from digitalme.app import create_app
from digitalme.cli import app as cli
from digitalme.host.migrate import upgrade
from digitalme.monitoring.health import EXTERNAL, HealthResult
from digitalme.monitoring.storage import upgrade as upgrade_store
from digitalme.monitoring.testing import ScriptedCheck
from digitalme.settings import load_settings
from servers import find_free_port

STARTUP_DEADLINE = 30.0  # seconds; a bound for waiting


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Settings for a local run: a data dir of its own, no process check (machine-dependent)."""
    import os

    for name in list(os.environ):
        if name.startswith("DIGITALME"):
            monkeypatch.delenv(name)
    return {
        "DIGITALME__SERVER__DATA_DIR": str(tmp_path / "var"),
        "DIGITALME__HEALTH__PROCESS__ENABLED": "false",
    }


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, args, env=env)


def test_local_checks_and_their_exit_codes(environment: dict[str, str]) -> None:
    assert invoke(["db", "upgrade"], environment).exit_code == 0

    degraded = invoke(["health"], environment)
    assert degraded.exit_code == 1, degraded.output
    lines = degraded.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "DURATION", "DESCRIPTION"]
    rows = {line.split()[0]: line for line in lines[1:-1] if not line.startswith(" ")}
    assert set(rows) == {"telemetry-store", "database", "claude-api"}
    assert "Degraded" in rows["claude-api"]
    assert "not configured" in rows["claude-api"]
    assert lines[-1].startswith("overall: Degraded")

    ready = invoke(["health", "--ready"], environment)
    assert ready.exit_code == 0, ready.output
    assert "claude-api" not in ready.stdout

    without_claude = {**environment, "DIGITALME__HEALTH__CLAUDE__ENABLED": "false"}
    assert invoke(["health"], without_claude).exit_code == 0


def test_an_unreachable_database_exits_2_without_its_password(
    environment: dict[str, str],
) -> None:
    url = f"postgresql+asyncpg://app:cli-secret-pw@127.0.0.1:{find_free_port()}/app"
    result = invoke(["health"], {**environment, "DIGITALME__CONNECTION_STRINGS__DATABASE": url})
    assert result.exit_code == 2, result.output
    database = next(line for line in result.stdout.splitlines() if line.startswith("database"))
    assert "Unhealthy" in database
    assert "error: " in result.stdout  # local runs show the (redacted) errors
    assert "cli-secret-pw" not in result.output


def test_bad_health_settings_stop_with_one_line(environment: dict[str, str]) -> None:
    result = invoke(["health"], {**environment, "DIGITALME__HEALTH__PROBE_INTERVAL": "0"})
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "digitalme: invalid configuration: health.probe_interval: "
        "Input should be greater than or equal to 0.05"
    ]


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[tuple[str, ScriptedCheck, ScriptedCheck]]:
    """A real uvicorn server on loopback, in a thread, with two switchable checks."""
    settings = load_settings(
        server={"data_dir": str(tmp_path / "var")},
        auth={"jwt_secret": JWT_SECRET},
        health={
            "prober_enabled": False,
            "cache_seconds": 0,
            "process": {"enabled": False},
            "claude": {"enabled": False},
        },
    )
    upgrade(settings.database_url)
    upgrade_store(settings.telemetry_store_url)
    app = create_app(settings)
    inside = ScriptedCheck("inside")
    outside = ScriptedCheck("outside")
    app.state.monitoring.health.add(inside)
    app.state.monitoring.health.add(outside, tags=[EXTERNAL])
    port = find_free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="health-instance")
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not server.started:
            assert thread.is_alive(), "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", inside, outside
    finally:
        server.should_exit = True
        thread.join()


def test_a_running_instance_and_its_exit_codes(
    instance: tuple[str, ScriptedCheck, ScriptedCheck], environment: dict[str, str]
) -> None:
    url, inside, outside = instance
    healthy = invoke(["health", "--url", url], environment)
    assert healthy.exit_code == 0, healthy.output
    assert "inside" in healthy.stdout
    assert "outside" in healthy.stdout

    inside.result = HealthResult.degraded("a little slow")
    degraded = invoke(["health", "--url", url + "/"], environment)
    assert degraded.exit_code == 1
    assert "a little slow" in degraded.stdout

    inside.result = HealthResult.healthy()
    outside.result = HealthResult.unhealthy("down")
    assert invoke(["health", "--url", url], environment).exit_code == 2
    ready = invoke(["health", "--url", url, "--ready"], environment)
    assert ready.exit_code == 0
    assert "outside" not in ready.stdout


def test_an_unreachable_instance_exits_2(environment: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{find_free_port()}"
    result = invoke(["health", "--url", url, "--timeout", "2"], environment)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"digitalme: cannot reach {url}/health: ConnectError")
