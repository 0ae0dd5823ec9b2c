"""`digitalme deployments`, `digitalme maintenance` and `digitalme watch`, against the
telemetry store (SQLite under the data dir) of the settings."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from digitalme.cli import app as cli
from digitalme.monitoring.storage import TelemetryStore
from digitalme.monitoring.uptime.model import OVERALL, BeatStatus, Source
from digitalme.monitoring.uptime.store import UptimeStore
from receivers import HttpReceiver, Reply
from servers import find_free_port

WAIT = 30.0  # seconds; a bound for waiting


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A data dir of its own; none of the developer's DIGITALME_* settings."""
    for name in list(os.environ):
        if name.startswith("DIGITALME"):
            monkeypatch.delenv(name)
    return {"DIGITALME__SERVER__DATA_DIR": str(tmp_path / "var"), "LOGNAME": "ci-bot"}


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, args, env=env)


def refused(result: Result) -> str:
    """The one line of a refused command (exit code 2, nothing on stdout)."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def store_of(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'var' / 'telemetry.db'}"


# -- deployments ---------------------------------------------------------------------


def test_deployments_record_and_list(environment: dict[str, str]) -> None:
    earlier = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    first = invoke(
        [
            "deployments",
            "record",
            "--version",
            "1.4.0",
            "--by",
            "alice",
            "--description",
            "new\nsearch",
            "--at",
            earlier.isoformat(),
        ],
        environment,
    )
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("recorded deployment ")
    assert f"1.4.0 at {earlier.isoformat()} by alice" in first.stdout

    second = invoke(["deployments", "record", "--version", "1.4.1"], environment)
    assert second.exit_code == 0, second.output
    assert "by ci-bot" in second.stdout  # the login name by default

    old = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    assert (
        invoke(["deployments", "record", "--version", "1.3.9", "--at", old], environment).exit_code
        == 0
    )

    listed = invoke(["deployments", "list"], environment)
    assert listed.exit_code == 0, listed.output
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [row[1] for row in rows] == ["1.4.1", "1.4.0"]  # the last 7 days, newest first
    assert rows[1][0] == earlier.isoformat()
    assert rows[1][2] == "alice"
    assert rows[1][4] == "new search"  # one line per deployment
    assert len(rows[0]) == 4  # no description, no trailing tab

    longer = invoke(["deployments", "list", "--window", "60d"], environment)
    assert [line.split("\t")[1] for line in longer.stdout.splitlines()] == [
        "1.4.1",
        "1.4.0",
        "1.3.9",
    ]
    recent = invoke(["deployments", "list", "--window", "1h"], environment)
    assert recent.exit_code == 0
    assert [line.split("\t")[1] for line in recent.stdout.splitlines()] == ["1.4.1"]


def test_bad_deployment_input_is_one_line_naming_the_option(
    environment: dict[str, str],
) -> None:
    naive = refused(
        invoke(["deployments", "record", "--version", "1", "--at", "2026-01-01T00:00"], environment)
    )
    assert naive == "digitalme: --at: Input should have timezone info"
    garbage = refused(
        invoke(["deployments", "record", "--version", "1", "--at", "yesterday"], environment)
    )
    assert garbage.startswith("digitalme: --at: Input should be a valid datetime")
    empty = refused(invoke(["deployments", "record", "--version", ""], environment))
    assert empty == "digitalme: --version: String should have at least 1 character"
    long = refused(invoke(["deployments", "record", "--version", "v" * 101], environment))
    assert long.startswith("digitalme: --version: String should have at most 100 characters")
    window = refused(invoke(["deployments", "list", "--window", "7x"], environment))
    assert window.startswith("digitalme: --window: not a duration: '7x'")
    zero = refused(invoke(["deployments", "list", "--window", "0"], environment))
    assert zero == "digitalme: --window: must be longer than 0"


# -- maintenance ---------------------------------------------------------------------


def test_maintenance_add_list_and_remove(environment: dict[str, str]) -> None:
    added = invoke(
        [
            "maintenance",
            "add",
            "--title",
            "nightly backup",
            "--start",
            "2026-03-01T02:00:00Z",
            "--end",
            "2026-03-01T02:30:00+00:00",
            "--every",
            "daily",
            "--until",
            "2026-04-01T00:00:00Z",
            "--component",
            "database",
            "--component",
            "telemetry-store",
        ],
        environment,
    )
    assert added.exit_code == 0, added.output
    assert added.stdout.startswith("added maintenance window ")
    window_id = added.stdout.split()[3].rstrip(":")
    once = invoke(
        [
            "maintenance",
            "add",
            "--title",
            "move to new host",
            "--start",
            "2026-02-01T10:00:00+01:00",
            "--end",
            "2026-02-01T12:00:00+01:00",
            "--by",
            "bob",
        ],
        environment,
    )
    assert once.exit_code == 0, once.output

    listed = invoke(["maintenance", "list"], environment)
    assert listed.exit_code == 0, listed.output
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert rows[0][1:] == [
        "2026-02-01T09:00:00+00:00",
        "2026-02-01T11:00:00+00:00",
        "once",
        "all",
        "move to new host",
        "bob",
    ]
    assert rows[1] == [
        window_id,
        "2026-03-01T02:00:00+00:00",
        "2026-03-01T02:30:00+00:00",
        "daily until 2026-04-01T00:00:00+00:00",
        "database,telemetry-store",
        "nightly backup",
        "ci-bot",
    ]

    removed = invoke(["maintenance", "remove", window_id], environment)
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.strip() == f"removed maintenance window {window_id}"
    assert [
        line.split("\t")[5]
        for line in invoke(["maintenance", "list"], environment).stdout.splitlines()
    ] == ["move to new host"]
    again = invoke(["maintenance", "remove", window_id], environment)
    assert again.exit_code == 1
    assert again.stderr.strip() == f"digitalme: no maintenance window {window_id!r}"


def test_an_empty_maintenance_list_says_so(environment: dict[str, str]) -> None:
    result = invoke(["maintenance", "list"], environment)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr.strip() == "no maintenance windows"


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            ["--start", "2026-01-01T02:00Z", "--end", "2026-01-01T01:00Z"],
            "digitalme: --end: must be after --start",
        ),
        (
            ["--start", "2026-01-01T02:00", "--end", "2026-01-01T03:00Z"],
            "digitalme: --start: Input should have timezone info",
        ),
        (
            ["--start", "2026-01-01T02:00Z", "--end", "2026-01-01T03:00Z", "--every", "hourly"],
            "digitalme: --every: Input should be 'daily' or 'weekly'",
        ),
        (
            ["--start", "2026-01-01T02:00Z", "--end", "2026-01-02T03:00Z", "--every", "daily"],
            "digitalme: --end: a daily window must be shorter than its period",
        ),
        (
            [
                "--start",
                "2026-01-01T02:00Z",
                "--end",
                "2026-01-01T03:00Z",
                "--until",
                "2026-02-01T00:00Z",
            ],
            "digitalme: --until: only a recurring window has an end of its recurrence",
        ),
        (
            ["--start", "2026-01-01T02:00Z", "--end", "2026-01-01T03:00Z", "--component", "a b"],
            "digitalme: --component: 'a b' is not a component name",
        ),
        (
            ["--start", "2026-01-01T02:00Z", "--end", "2026-01-01T03:00Z", "--by", "x" * 201],
            "digitalme: --by: String should have at most 200 characters",
        ),
    ],
    ids=["end-before-start", "naive", "hourly", "too-long", "until-once", "component", "by"],
)
def test_bad_maintenance_input_is_one_line_naming_the_option(
    environment: dict[str, str], extra: list[str], line: str
) -> None:
    assert refused(invoke(["maintenance", "add", "--title", "t", *extra], environment)) == line
    assert invoke(["maintenance", "list"], environment).stdout == ""  # nothing was saved


def test_an_empty_title_is_refused(environment: dict[str, str]) -> None:
    line = refused(
        invoke(
            [
                "maintenance",
                "add",
                "--title",
                "",
                "--start",
                "2026-01-01T02:00Z",
                "--end",
                "2026-01-01T03:00Z",
            ],
            environment,
        )
    )
    assert line == "digitalme: --title: String should have at least 1 character"


# -- watch ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--target", "localhost:8000"], "digitalme: --target: must be an http:// or https:// URL"),
        (
            ["--target", "ftp://example.com"],
            "digitalme: --target: must be an http:// or https:// URL",
        ),
        (["--target", "http://"], "digitalme: --target: has no host"),
        (["--target", "http://127.0.0.1:70000"], "digitalme: --target: not a valid URL"),
        (
            ["--target", "http://127.0.0.1:8000", "--interval", "0"],
            "digitalme: --interval: must be between 0.05 and 3600 seconds",
        ),
        (
            ["--target", "http://127.0.0.1:8000", "--timeout", "-1"],
            "digitalme: --timeout: must be more than 0 and at most 600 seconds",
        ),
        (
            ["--target", "http://127.0.0.1:8000", "--component", "a b"],
            "digitalme: --component: letters, digits and _ . : - only (at most 100)",
        ),
    ],
)
def test_watch_refuses_bad_options(
    environment: dict[str, str], tmp_path: Path, args: list[str], line: str
) -> None:
    assert refused(invoke(["watch", *args], environment)) == line
    assert not (tmp_path / "var").exists()  # refused before touching the store


def test_watch_records_outside_heartbeats_until_sigterm(tmp_path: Path) -> None:
    healthy = b'{"status": "Healthy", "results": []}'
    with HttpReceiver(lambda request: Reply(200, healthy)) as receiver:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DIGITALME")}
        environment["DIGITALME__SERVER__DATA_DIR"] = str(tmp_path / "var")
        with (tmp_path / "watch.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "digitalme",
                    "watch",
                    "--target",
                    f"http://127.0.0.1:{receiver.port}",
                    "--interval",
                    "0.1",
                ],
                cwd=tmp_path,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + WAIT
            while len(receiver.requests) < 5 and time.monotonic() < deadline:
                assert process.poll() is None, (tmp_path / "watch.log").read_text()
                time.sleep(0.05)
            assert len(receiver.requests) >= 5
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=WAIT)
    output = (tmp_path / "watch.log").read_text()
    assert code == 0, output
    assert "watching http://127.0.0.1:" in output
    assert "Traceback" not in output
    assert {request.path for request in receiver.requests} == {"/health/ready"}

    async def recorded() -> list[BeatStatus]:
        store = await TelemetryStore.open(store_of(tmp_path), migrate=False)
        try:
            beats = await UptimeStore(store.engine).heartbeats(
                Source.OUTSIDE, OVERALL, 0, time.time() + 1, 1000
            )
        finally:
            await store.close()
        return [beat.status for beat in beats]

    statuses = asyncio.run(recorded())
    assert len(statuses) >= 5
    assert set(statuses) == {BeatStatus.UP}


def test_watch_of_a_closed_port_records_down(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIGITALME")}
    environment["DIGITALME__SERVER__DATA_DIR"] = str(tmp_path / "var")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digitalme",
            "watch",
            "--target",
            f"http://127.0.0.1:{find_free_port()}",
            "--interval",
            "0.1",
            "--component",
            "edge",
        ],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def incidents() -> list[str]:
        store = await TelemetryStore.open(store_of(tmp_path), migrate=False)
        try:
            found = await UptimeStore(store.engine).incidents(0, time.time() + 1)
        finally:
            await store.close()
        return [f"{i.source}/{i.component}/{i.description}" for i in found]

    try:
        deadline = time.monotonic() + WAIT
        found: list[str] = []
        while not found and time.monotonic() < deadline:
            time.sleep(0.1)
            if (tmp_path / "var" / "telemetry.db").exists():
                try:
                    found = asyncio.run(incidents())
                except Exception:  # tables not created yet: the watcher is still migrating
                    found = []
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=WAIT) == 0
    assert found == ["outside/edge/unreachable"]
