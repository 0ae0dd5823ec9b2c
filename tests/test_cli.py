"""The command line, run as a real subprocess against a SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run(
    args: list[str], cwd: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIGITALME")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "digitalme", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run(["--help"], tmp_path)
    assert result.returncode == 0
    for command in ("serve", "db", "users"):
        assert command in result.stdout


def test_db_upgrade_then_users_create_and_list(tmp_path: Path) -> None:
    assert run(["db", "upgrade"], tmp_path).returncode == 0
    assert (tmp_path / "var" / "digitalme.db").is_file()
    created = run(
        ["users", "create", "--email", "Ops@Example.com", "--role", "Admin", "--password-stdin"],
        tmp_path,
        stdin="a long enough password\n",
    )
    assert created.returncode == 0, created.stderr
    listed = run(["users", "list"], tmp_path)
    assert "ops@example.com\tAdmin" in listed.stdout
    duplicate = run(
        ["users", "create", "--email", "ops@example.com", "--password-stdin"],
        tmp_path,
        stdin="a long enough password\n",
    )
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    short = run(
        ["users", "create", "--email", "x@example.com", "--password-stdin"], tmp_path, stdin="abc\n"
    )
    assert short.returncode == 1
    assert "password" in short.stderr


def test_bad_configuration_stops_with_one_line(tmp_path: Path) -> None:
    result = run(["db", "upgrade"], tmp_path, DIGITALME__AUTH__LOCKOUT_THRESHOLD="zero")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "auth.lockout_threshold" in lines[0]
    assert "Traceback" not in result.stderr

    missing = run(["db", "upgrade", "--config", "nowhere.yaml"], tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "digitalme: config file not found: nowhere.yaml"
