"""The ``digitalme`` command line: serve, health, database migrations, users, alerts."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from digitalme.cli_uptime import register as register_uptime_commands
from digitalme.settings import (
    ENV_PREFIX,
    BootstrapSettings,
    ConfigError,
    Role,
    Settings,
    load_settings,
)

if TYPE_CHECKING:
    from digitalme.monitoring.health import HealthReport

app = typer.Typer(
    help="DigitalMe API service with production monitoring.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
alerts_app = typer.Typer(help="Alert rules: validate and test rule files.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (also DIGITALME_CONFIG)."),
]


def _settings(config: Path | None) -> Settings:
    """Load settings or stop with one line naming the key and the problem."""
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"digitalme: {exc}", err=True)
        raise typer.Exit(code=2) from None


def _check_alert_rules(settings: Settings) -> None:
    """Stop with one line naming the file, rule and field when a rule is invalid."""
    if not settings.alerting.enabled:
        return
    from digitalme.monitoring.alerts import RuleFileError, load_rules

    try:
        load_rules(settings)
    except RuleFileError as exc:
        typer.echo(f"digitalme: {exc}", err=True)
        raise typer.Exit(code=2) from None


def _upgrade(settings: Settings) -> None:
    from digitalme.host.migrate import upgrade
    from digitalme.monitoring.storage import upgrade as upgrade_telemetry_store

    upgrade(settings.database_url)
    upgrade_telemetry_store(settings.telemetry_store_url)


async def _first_admin(settings: Settings) -> None:
    from digitalme.host.db import Database
    from digitalme.host.users import ensure_first_admin
    from digitalme.monitoring.clock import SystemClock

    bootstrap = BootstrapSettings()
    password = bootstrap.admin_password.get_secret_value() if bootstrap.admin_password else None
    database = Database(settings.database_url)
    try:
        async with database.sessions() as session:
            generated = await ensure_first_admin(
                session, SystemClock(), email=bootstrap.admin_email, password=password
            )
    finally:
        await database.dispose()
    if generated is not None:
        typer.echo(
            f"Created SuperAdmin {bootstrap.admin_email} with password: {generated}\n"
            "(shown once; set DIGITALME_ADMIN_PASSWORD to choose it)",
            err=True,
        )


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address [server.host].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [server.port].")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes [server.workers].")] = None,
) -> None:
    """Apply migrations, create the first SuperAdmin if there is no user, and serve."""
    import uvicorn

    from digitalme.logging import configure_logging

    if config is not None:
        # Worker processes load the same file through the factory.
        os.environ["DIGITALME_CONFIG"] = str(config.resolve())
    if workers is not None:
        # The workers read their settings themselves: they must know how many they are
        # (the live hub then shares its messages through the store between them).
        os.environ[f"{ENV_PREFIX}SERVER__WORKERS"] = str(workers)
    settings = _settings(config)
    _check_alert_rules(settings)
    configure_logging()
    _upgrade(settings)
    asyncio.run(_first_admin(settings))
    uvicorn.run(
        "digitalme.app:app_from_environment",
        factory=True,
        host=host or settings.server.host,
        port=port or settings.server.port,
        workers=workers or settings.server.workers,
        log_config=None,
        proxy_headers=False,  # the guard resolves client IPs from trusted proxies itself
        # uvicorn's default waits for open responses without a bound (a live SSE stream,
        # a slow upstream call) before running the shutdown; bound it.
        timeout_graceful_shutdown=settings.server.shutdown_timeout,
    )


# Exit codes of `digitalme health`, for deploy scripts.
HEALTH_EXIT_CODES = {"Healthy": 0, "Degraded": 1, "Unhealthy": 2}
UNREACHABLE_EXIT_CODE = 2


@app.command()
def health(
    url: Annotated[
        str | None,
        typer.Option(help="Ask the running instance at this base URL instead of checking here."),
    ] = None,
    ready: Annotated[
        bool, typer.Option("--ready", help="Readiness only: leave out the external checks.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for a running instance (with --url).")
    ] = 30.0,
    config: ConfigOption = None,
) -> None:
    """Run the health checks once and print them; exit 0 Healthy, 1 Degraded, 2 Unhealthy.

    Without --url the checks are built from the local configuration and run in
    this process (details included: whoever can read the configuration may see
    them). With --url, URL/health (or URL/health/ready) of a running instance is
    read; an instance that cannot be reached also exits 2.
    """
    if url is None:
        settings = _settings(config)
        body = _local_health_body(asyncio.run(_local_health(settings, ready)))
    else:
        body = _remote_health_body(url, ready, timeout)
    status = body.get("status")
    if status not in HEALTH_EXIT_CODES:
        typer.echo(f"digitalme: unexpected health status {status!r}", err=True)
        raise typer.Exit(code=UNREACHABLE_EXIT_CODE)
    _print_health(body)
    raise typer.Exit(code=HEALTH_EXIT_CODES[status])


async def _local_health(settings: Settings, ready: bool) -> HealthReport:
    from digitalme.host.db import Database
    from digitalme.host.health import add_host_checks
    from digitalme.host.llm import build_conversation_model
    from digitalme.monitoring.clock import SystemClock
    from digitalme.monitoring.health.builtin import add_builtin_checks
    from digitalme.monitoring.health.service import HealthMonitor
    from digitalme.monitoring.storage import TelemetryStore
    from digitalme.monitoring.telemetry.redaction import Redactor

    clock = SystemClock()
    redactor = Redactor(
        settings.custom_telemetry.sensitive_data_fields, settings.telemetry.max_property_length
    )
    monitor = HealthMonitor(settings.health, clock=clock, redactor=redactor)
    store = TelemetryStore(settings.telemetry_store_url, clock=clock)
    database = Database(settings.database_url)
    model = build_conversation_model(settings.claude, clock=clock)
    add_builtin_checks(monitor, settings, store=store, clock=clock)
    add_host_checks(monitor, settings, database=database, model=model, clock=clock)
    try:
        return await monitor.report(ready=ready, max_age=0.0)
    finally:
        await monitor.stop()
        if model is not None:
            await model.aclose()
        await database.dispose()
        await store.close()


def _local_health_body(report: HealthReport) -> dict[str, Any]:
    from digitalme.monitoring.health.endpoints import report_body

    return report_body(report, details=True)


def _remote_health_body(url: str, ready: bool, timeout: float) -> dict[str, Any]:
    import httpx

    from digitalme.monitoring.health import HEALTH_PATH, READY_PATH

    target = url.rstrip("/") + (READY_PATH if ready else HEALTH_PATH)
    try:
        response = httpx.get(target, timeout=timeout, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        typer.echo(f"digitalme: cannot reach {target}: {type(exc).__name__}", err=True)
        raise typer.Exit(code=UNREACHABLE_EXIT_CODE) from None
    # 503 is the answer for Unhealthy; anything else but 200 is not a health report.
    if response.status_code not in (200, 503):
        typer.echo(f"digitalme: {target} answered HTTP {response.status_code}", err=True)
        raise typer.Exit(code=UNREACHABLE_EXIT_CODE)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        typer.echo(f"digitalme: {target} did not answer a health report", err=True)
        raise typer.Exit(code=UNREACHABLE_EXIT_CODE)
    return body


def _print_health(body: dict[str, Any]) -> None:
    """A table: name, status, duration, description; errors (when shown) under their row."""
    results = [item for item in body.get("results") or [] if isinstance(item, dict)]
    rows = [
        (
            str(item.get("name", "")),
            str(item.get("status", "")),
            f"{float(item.get('duration') or 0.0):.1f} ms",
            str(item.get("description", "")),
        )
        for item in results
    ]
    header = ("NAME", "STATUS", "DURATION", "DESCRIPTION")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(3)]
    indent = " " * (sum(widths) + 2 * len(widths))  # where the description column starts
    for row, item in zip((header, *rows), (None, *results), strict=True):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[3]]))
        if item is not None and item.get("exception"):
            typer.echo(f"{indent}error: {item['exception']}")
    total = float(body.get("totalDuration") or 0.0)
    typer.echo(f"overall: {body['status']} ({total:.1f} ms)")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply all database migrations (the host database and the telemetry store)."""
    settings = _settings(config)
    _upgrade(settings)
    typer.echo("database is up to date")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="Email address (the login).")],
    role: Annotated[Role, typer.Option(help="Role.")] = Role.USER,
    display_name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Create a user; the password comes from a prompt or standard input."""
    from digitalme.host.errors import ApiError

    settings = _settings(config)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user_id = asyncio.run(_create_user(settings, email, password, role, display_name))
    except ApiError as exc:
        typer.echo(f"digitalme: {exc.message}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"created user {user_id} {email} ({role})")


async def _create_user(
    settings: Settings, email: str, password: str, role: Role, display_name: str | None
) -> int:
    from digitalme.host.db import Database
    from digitalme.host.users import create_user
    from digitalme.monitoring.clock import SystemClock

    database = Database(settings.database_url)
    try:
        async with database.sessions() as session:
            user = await create_user(
                session,
                SystemClock(),
                email=email,
                password=password,
                role=role,
                display_name=display_name,
            )
            return user.id
    finally:
        await database.dispose()


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    """List users."""
    settings = _settings(config)
    for user in asyncio.run(_list_users(settings)):
        typer.echo("\t".join(user))


async def _list_users(settings: Settings) -> list[tuple[str, str, str, str]]:
    from digitalme.host.db import Database
    from digitalme.host.users import list_users

    database = Database(settings.database_url)
    try:
        async with database.sessions() as session:
            return [
                (str(u.id), u.email, u.role, u.created_at.isoformat())
                for u in await list_users(session)
            ]
    finally:
        await database.dispose()


@alerts_app.command("check")
def alerts_check(
    file: Annotated[Path, typer.Argument(help="Rule file (YAML with a 'rules' list).")],
    config: ConfigOption = None,
) -> None:
    """Validate a rule file and show what each rule evaluates to now (exit 1 if invalid)."""
    from digitalme.monitoring.alerts.commands import check_rules

    raise typer.Exit(code=check_rules(file, _settings(config), typer.echo))


@alerts_app.command("test")
def alerts_test(
    file: Annotated[Path, typer.Argument(help="Rule file (YAML with a 'rules' list).")],
    tests: Annotated[Path, typer.Argument(help="Rule tests (YAML, like promtool test rules).")],
    config: ConfigOption = None,
) -> None:
    """Run rule unit tests against given series; exit 1 if any fails."""
    from digitalme.monitoring.alerts.commands import run_rule_tests

    raise typer.Exit(code=run_rule_tests(file, tests, _settings(config), typer.echo))


register_uptime_commands(app)


def main() -> None:
    app(prog_name="digitalme")
