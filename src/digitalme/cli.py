"""The ``digitalme`` command line: serve, database migrations, users."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from digitalme.settings import BootstrapSettings, ConfigError, Role, Settings, load_settings

app = typer.Typer(
    help="DigitalMe API service with production monitoring.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")

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
    settings = _settings(config)
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
    )


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


def main() -> None:
    app(prog_name="digitalme")
