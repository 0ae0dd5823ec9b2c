"""Uptime commands: ``digitalme watch``, ``digitalme deployments ...`` and
``digitalme maintenance ...``.

They work on the telemetry store of the settings (``settings.telemetry_store_url``)
directly, applying its migrations first; a running service picks up maintenance
windows changed here within a minute. Invalid input stops with one line naming
the option, exit code 2.
"""

from __future__ import annotations

import asyncio
import getpass
import math
import re
import signal
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from digitalme.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from digitalme.monitoring.uptime.maintenance import MaintenanceWindow
    from digitalme.monitoring.uptime.store import UptimeStore

__all__ = ["deployments_app", "maintenance_app", "register", "watch"]

deployments_app = typer.Typer(help="Deployment markers.", no_args_is_help=True)
maintenance_app = typer.Typer(
    help="Maintenance windows (time that counts neither for nor against uptime).",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (also DIGITALME_CONFIG)."),
]
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

MAX_LISTED = 1000
"""Deployments one ``deployments list`` prints at most."""
_DEPLOYMENT_OPTIONS = {
    "version": "--version",
    "deployed_by": "--by",
    "at": "--at",
    "description": "--description",
}
_MAINTENANCE_OPTIONS = {
    "title": "--title",
    "starts_at": "--start",
    "ends_at": "--end",
    "recurrence": "--every",
    "until": "--until",
    "components": "--component",
    "created_by": "--by",
}


def register(app: typer.Typer) -> None:
    """Add ``watch``, ``deployments`` and ``maintenance`` to the ``digitalme`` command."""
    app.command()(watch)
    app.add_typer(deployments_app, name="deployments")
    app.add_typer(maintenance_app, name="maintenance")


# -- shared --------------------------------------------------------------------------


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"digitalme: {message}", err=True)
    raise typer.Exit(code=code)


def _settings(config: Path | None) -> Settings:
    """Load settings or stop with one line naming the key and the problem."""
    try:
        return load_settings(config)
    except ConfigError as exc:
        _fail(str(exc))


def _invalid(exc: ValidationError, options: Mapping[str, str]) -> str:
    """``option: message`` for the first error of ``exc`` (fields named as options)."""
    error = exc.errors()[0]
    location = error.get("loc") or ()
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    field = str(location[0]) if location else ""
    if not field:
        # a model-level check names its field at the start of its message, and may
        # name another one in it ("must be after starts_at": "must be after --start")
        head, separator, rest = message.partition(": ")
        if separator and head in options:
            field, message = head, rest
        for name, option in options.items():
            if "_" in name:
                message = re.sub(rf"\b{name}\b", option, message)
    return f"{options.get(field, field or 'input')}: {message}"


def _validated(model: type[M], data: Mapping[str, Any], options: Mapping[str, str]) -> M:
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        _fail(_invalid(exc, options))


def _with_store(settings: Settings, job: Callable[[UptimeStore], Awaitable[T]]) -> T:
    """Run ``job`` on the uptime tables of the settings' telemetry store (migrated first)."""

    async def run() -> T:
        from digitalme.monitoring.clock import SystemClock
        from digitalme.monitoring.storage import TelemetryStore
        from digitalme.monitoring.uptime.store import UptimeStore

        store = await TelemetryStore.open(settings.telemetry_store_url, clock=SystemClock())
        try:
            return await job(UptimeStore(store.engine))
        finally:
            await store.close()

    return asyncio.run(run())


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError):  # no login name, no passwd entry (some containers)
        return "unknown"


# -- watch ---------------------------------------------------------------------------


def watch(
    target: Annotated[
        str, typer.Option(help="Base URL of the service, e.g. http://127.0.0.1:8000.")
    ],
    interval: Annotated[
        float | None,
        typer.Option(help="Seconds between probes [health.probe_interval]."),
    ] = None,
    component: Annotated[
        str, typer.Option(help="Component the heartbeats are recorded for.")
    ] = "overall",
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for an answer (default: the interval, at most 10)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Probe TARGET/health/ready from outside and record outside heartbeats until stopped.

    200 Healthy is up, 200 Degraded is degraded; 503, any other answer, a refused
    connection or a timeout is down. Runs until SIGINT or SIGTERM.
    """
    from digitalme.monitoring.uptime.maintenance import COMPONENT_PATTERN
    from digitalme.monitoring.uptime.watcher import TargetError, ready_url

    settings = _settings(config)
    try:
        url = ready_url(target)
    except TargetError as exc:
        _fail(f"--target: {exc.reason}")
    every = settings.health.probe_interval if interval is None else interval
    if not math.isfinite(every) or not 0.05 <= every <= 3600:
        _fail("--interval: must be between 0.05 and 3600 seconds")
    if timeout is not None and (not math.isfinite(timeout) or not 0 < timeout <= 600):
        _fail("--timeout: must be more than 0 and at most 600 seconds")
    if not re.match(COMPONENT_PATTERN, component):
        _fail("--component: letters, digits and _ . : - only (at most 100)")

    from digitalme.logging import configure_logging
    from digitalme.monitoring.storage import upgrade

    configure_logging()
    upgrade(settings.telemetry_store_url)
    typer.echo(f"watching {url} every {every:g} s as {component!r}; Ctrl-C stops", err=True)
    asyncio.run(_watch(settings, target, every, component, timeout))


async def _watch(
    settings: Settings, target: str, interval: float, component: str, timeout: float | None
) -> None:
    from digitalme.monitoring.clock import SystemClock
    from digitalme.monitoring.storage import TelemetryStore
    from digitalme.monitoring.uptime.store import UptimeStore
    from digitalme.monitoring.uptime.watcher import Watcher

    clock = SystemClock()
    store = TelemetryStore(settings.telemetry_store_url, clock=clock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        async with Watcher(
            target,
            UptimeStore(store.engine),
            clock=clock,
            interval=interval,
            component=component,
            timeout=timeout,
            settings=settings.uptime,
        ) as watcher:
            await watcher.run(stop)
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
        await store.close()


# -- deployments ---------------------------------------------------------------------


@deployments_app.command("record")
def deployments_record(
    version: Annotated[str, typer.Option(help="The version that went out.")],
    by: Annotated[
        str | None, typer.Option(help="Who shipped it (default: the login name).")
    ] = None,
    description: Annotated[str, typer.Option(help="What changed.")] = "",
    at: Annotated[
        str | None,
        typer.Option(help="When, ISO 8601 with a time zone (default: now)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Record a deployment marker."""
    from digitalme.monitoring.uptime.deployments import Deployment

    settings = _settings(config)
    deployment = _validated(
        Deployment,
        {
            "version": version,
            "deployed_by": by if by is not None else _user(),
            "description": description,
            "at": at if at is not None else datetime.now(UTC),
        },
        _DEPLOYMENT_OPTIONS,
    )
    _with_store(settings, lambda store: store.add_deployment(deployment))
    typer.echo(
        f"recorded deployment {deployment.id}: {deployment.version} "
        f"at {_iso(deployment.at)} by {deployment.deployed_by}"
    )


@deployments_app.command("list")
def deployments_list(
    window: Annotated[
        str, typer.Option(help="How far back: 30m, 24h, 7d, 90d, ... (at most 366d).")
    ] = "7d",
    config: ConfigOption = None,
) -> None:
    """List deployments in the window, newest first: time, version, by, id, description."""
    from digitalme.monitoring.durations import parse_duration

    try:
        seconds = parse_duration(window)
    except ValueError as exc:
        _fail(f"--window: {exc}")
    if seconds <= 0:
        _fail("--window: must be longer than 0")
    settings = _settings(config)
    now = datetime.now(UTC).timestamp()
    found = _with_store(settings, lambda store: store.deployments(now - seconds, now, MAX_LISTED))
    for deployment in found:
        typer.echo(
            "\t".join(
                (
                    _iso(deployment.at),
                    deployment.version,
                    deployment.deployed_by,
                    deployment.id,
                    " ".join(deployment.description.split()),
                )
            ).rstrip("\t")
        )
    if not found:
        typer.echo(f"no deployments in the last {window}", err=True)


# -- maintenance ---------------------------------------------------------------------


@maintenance_app.command("add")
def maintenance_add(
    title: Annotated[str, typer.Option(help="What the maintenance is.")],
    start: Annotated[str, typer.Option(help="Start, ISO 8601 with a time zone.")],
    end: Annotated[str, typer.Option(help="End, ISO 8601 with a time zone.")],
    every: Annotated[str | None, typer.Option(help="Repeat the window: daily or weekly.")] = None,
    until: Annotated[
        str | None, typer.Option(help="Last moment a recurring window may start (ISO 8601).")
    ] = None,
    component: Annotated[
        list[str] | None,
        typer.Option(help="Component covered (repeat for several; default: all of them)."),
    ] = None,
    by: Annotated[
        str | None, typer.Option(help="Who planned it (default: the login name).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Add a maintenance window (one-off, or daily / weekly)."""
    from digitalme.monitoring.uptime.maintenance import MaintenanceWindow

    settings = _settings(config)
    window = _validated(
        MaintenanceWindow,
        {
            "title": title,
            "starts_at": start,
            "ends_at": end,
            "recurrence": every,
            "until": until,
            "components": list(component or []),
            "created_by": by if by is not None else _user(),
            "created_at": datetime.now(UTC),
        },
        _MAINTENANCE_OPTIONS,
    )
    _with_store(settings, lambda store: store.save_maintenance(window))
    typer.echo(f"added maintenance window {window.id}: {_describe(window)}")


@maintenance_app.command("list")
def maintenance_list(config: ConfigOption = None) -> None:
    """List maintenance windows: id, start, end, repeat, components, title, by."""
    settings = _settings(config)
    windows = _with_store(settings, lambda store: store.maintenance_windows())
    for window in windows:
        repeat = "once" if window.recurrence is None else str(window.recurrence)
        if window.until is not None:
            repeat += f" until {_iso(window.until)}"
        typer.echo(
            "\t".join(
                (
                    window.id,
                    _iso(window.starts_at),
                    _iso(window.ends_at),
                    repeat,
                    ",".join(window.components) or "all",
                    window.title,
                    window.created_by,
                )
            ).rstrip("\t")
        )
    if not windows:
        typer.echo("no maintenance windows", err=True)


@maintenance_app.command("remove")
def maintenance_remove(
    window_id: Annotated[str, typer.Argument(metavar="ID", help="The window's id.")],
    config: ConfigOption = None,
) -> None:
    """Remove a maintenance window (exit 1 when there is none with that id)."""
    settings = _settings(config)
    if not _with_store(settings, lambda store: store.delete_maintenance(window_id)):
        _fail(f"no maintenance window {window_id!r}", code=1)
    typer.echo(f"removed maintenance window {window_id}")


def _describe(window: MaintenanceWindow) -> str:
    text = f"{window.title} ({_iso(window.starts_at)} .. {_iso(window.ends_at)}"
    if window.recurrence is not None:
        text += f", {window.recurrence}"
        if window.until is not None:
            text += f" until {_iso(window.until)}"
    covered = ", ".join(window.components) or "all components"
    return f"{text}; {covered})"
