"""Redis commands as ``Redis`` dependencies (redis-py's asyncio client).

Each command sent through an instrumented ``redis.asyncio.Redis`` becomes one
dependency: target ``host:port/db`` (never the password), name the command
(``SET``), data the command and its key only (``SET session:42``), never a
value, duration and success (result code ``OK`` or the exception's type name).
A pipeline is one dependency named ``PIPELINE`` (or ``MULTI`` for a
transaction) whose data lists its commands and keys.

**The hook.** redis-py 8 has no per-command callback: its ``event`` dispatcher
announces connection life-cycle events only, and its ``observability`` recorder
feeds a process-global OpenTelemetry meter (global state, no keys, no request
context). So this wraps ``execute_command`` on the given client *instance*
(an instance attribute shadowing the class method), plus ``pipeline`` so that
pipelines made from it are timed too. No class and no global is touched: other
clients are unaffected, and :meth:`RedisInstrumentation.remove` restores the
instance. It also covers clients that libraries build for themselves, given
the instance (``limits`` keeps its client at ``storage.bridge.storage``), and
Lua scripts, which call ``evalsha`` through the same ``execute_command``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from digitalme.monitoring.clock import Clock, SystemClock
from digitalme.monitoring.telemetry.client import TelemetryClient

__all__ = [
    "DEPENDENCY_TYPE",
    "RedisInstrumentation",
    "describe_command",
    "instrument_redis",
    "redis_target",
]

DEPENDENCY_TYPE = "Redis"
OK = "OK"
MAX_KEY_CHARS = 200
MAX_PIPELINE_COMMANDS = 10  # listed in a pipeline's data; the rest are counted

# Commands whose first argument is not a key. For most of them it is harmless
# (a cursor, a db index), but for AUTH, HELLO, ECHO and PING it is a secret or
# a value, which never goes into telemetry. Multi-word commands ("CONFIG SET",
# "ACL SETUSER", "CLIENT SETNAME", "SCRIPT LOAD") are never given a key either.
NO_KEY_COMMANDS = frozenset(
    {
        "AUTH", "HELLO", "ECHO", "PING", "SELECT", "SWAPDB", "QUIT", "RESET",
        "MULTI", "EXEC", "DISCARD", "UNWATCH", "WAIT", "WAITAOF",
        "INFO", "DBSIZE", "TIME", "LASTSAVE", "ROLE", "RANDOMKEY", "SCAN",
        "FLUSHALL", "FLUSHDB", "SAVE", "BGSAVE", "BGREWRITEAOF", "SHUTDOWN",
        "MONITOR", "SYNC", "PSYNC", "REPLICAOF", "SLAVEOF", "FAILOVER",
        "READONLY", "READWRITE", "MIGRATE", "DEBUG",
        "CLIENT", "CONFIG", "ACL", "SCRIPT", "FUNCTION", "CLUSTER", "MODULE",
        "COMMAND", "LATENCY", "MEMORY", "SLOWLOG",
    }
)  # fmt: skip
# EVAL-like commands: ``EVAL script numkeys key [key ...] arg [arg ...]``.
SCRIPT_COMMANDS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})

# The instrumentation installed on a client, so that installing twice is harmless.
_INSTALLED = "_digitalme_redis_instrumentation"

Execute = Callable[..., Awaitable[Any]]


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, int | float):
        return str(value)
    return None


def describe_command(args: Sequence[object]) -> tuple[str, str]:
    """``(name, data)`` for one command: ``("SET", "SET user:1")``; values never appear."""
    if not args:
        return "", ""
    name = (_text(args[0]) or "").upper()
    key: object = None
    if " " in name or name in NO_KEY_COMMANDS:
        key = None
    elif name in SCRIPT_COMMANDS:
        # Keys follow the script (or its sha) and their count; the args after them are values.
        try:
            if len(args) > 3 and int(cast(Any, args[2])) > 0:
                key = args[3]
        except (TypeError, ValueError):
            key = None
    elif len(args) > 1:
        key = args[1]
    text = _text(key) if key is not None else None
    if not text:
        return name, name
    return name, f"{name} {text[:MAX_KEY_CHARS]}"


def _describe_pipeline(commands: Iterable[tuple[Sequence[object], object]]) -> str:
    parts: list[str] = []
    total = 0
    for args, _options in commands:
        total += 1
        if total <= MAX_PIPELINE_COMMANDS:
            parts.append(describe_command(args)[1])
    if total > MAX_PIPELINE_COMMANDS:
        parts.append(f"+{total - MAX_PIPELINE_COMMANDS} more")
    return "; ".join(parts)


def redis_target(client: Redis) -> str:
    """``host:port/db`` (or ``socket-path/db``) of the client's pool; never credentials."""
    kwargs = client.connection_pool.connection_kwargs
    db = kwargs.get("db", 0)
    path = kwargs.get("path")
    if path:
        return f"{path}/{db}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


class RedisInstrumentation:
    """The wrappers installed on one client; :meth:`remove` restores it."""

    def __init__(
        self, client: Redis, telemetry: TelemetryClient, *, clock: Clock | None = None
    ) -> None:
        self.client = client
        self.target = redis_target(client)
        self._telemetry = telemetry
        self._clock = clock or SystemClock()

    def install(self) -> RedisInstrumentation:
        """Start observing the client (done by :func:`instrument_redis`)."""
        client = self.client
        execute = cast(Execute, client.execute_command)
        make_pipeline = client.pipeline

        async def execute_command(*args: Any, **options: Any) -> Any:
            started_at = self._clock.time()
            started = time.perf_counter()
            try:
                result = await execute(*args, **options)
            except (Exception, asyncio.CancelledError) as exc:
                self._record_command(args, started_at, started, exc)
                raise
            self._record_command(args, started_at, started, None)
            return result

        def pipeline(transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
            return self._instrument_pipeline(make_pipeline(transaction, shard_hint))

        # Instance attributes shadow the class's methods for this client only.
        vars(client)["execute_command"] = execute_command
        vars(client)["pipeline"] = pipeline
        vars(client)[_INSTALLED] = self
        return self

    def remove(self) -> None:
        """Give the client its own methods back (pipelines made before stay instrumented)."""
        attributes = vars(self.client)
        if attributes.get(_INSTALLED) is self:
            for name in ("execute_command", "pipeline", _INSTALLED):
                attributes.pop(name, None)

    def _instrument_pipeline(self, pipe: Pipeline) -> Pipeline:
        execute = cast(Callable[..., Awaitable[list[Any]]], pipe.execute)
        immediate = cast(Execute, pipe.immediate_execute_command)

        async def run(raise_on_error: bool = True) -> list[Any]:
            # Read before executing: execute() resets the pipeline's stack.
            name = "MULTI" if pipe.is_transaction or pipe.explicit_transaction else "PIPELINE"
            commands = list(pipe.command_stack)
            started_at = self._clock.time()
            started = time.perf_counter()
            try:
                result = await execute(raise_on_error)
            except (Exception, asyncio.CancelledError) as exc:
                self._record_pipeline(name, commands, started_at, started, exc)
                raise
            if commands:  # an empty pipeline sends nothing
                self._record_pipeline(name, commands, started_at, started, None)
            return result

        async def immediate_execute_command(*args: Any, **options: Any) -> Any:
            # WATCH and the reads of an optimistic transaction go out at once.
            started_at = self._clock.time()
            started = time.perf_counter()
            try:
                result = await immediate(*args, **options)
            except (Exception, asyncio.CancelledError) as exc:
                self._record_command(args, started_at, started, exc)
                raise
            self._record_command(args, started_at, started, None)
            return result

        vars(pipe)["execute"] = run
        vars(pipe)["immediate_execute_command"] = immediate_execute_command
        return pipe

    def _record_command(
        self,
        args: Sequence[object],
        started_at: float,
        started: float,
        error: BaseException | None,
    ) -> None:
        duration = time.perf_counter() - started
        try:
            name, data = describe_command(args)
            self._track(name, data, started_at, duration, error)
        except Exception:
            self._telemetry.report_internal_error("redis")

    def _record_pipeline(
        self,
        name: str,
        commands: Sequence[tuple[Sequence[object], object]],
        started_at: float,
        started: float,
        error: BaseException | None,
    ) -> None:
        duration = time.perf_counter() - started
        try:
            self._track(name, f"{name} {_describe_pipeline(commands)}", started_at, duration, error)
        except Exception:
            self._telemetry.report_internal_error("redis.pipeline")

    def _track(
        self,
        name: str,
        data: str,
        started_at: float,
        duration: float,
        error: BaseException | None,
    ) -> None:
        self._telemetry.track_dependency(
            DEPENDENCY_TYPE,
            name,
            data,
            started_at,
            duration,
            error is None,
            target=self.target,
            result_code=OK if error is None else type(error).__name__,
        )


def instrument_redis(
    client: Redis, telemetry: TelemetryClient, *, clock: Clock | None = None
) -> RedisInstrumentation:
    """Record every command of ``client`` (and of pipelines made from it) as a dependency.

    Idempotent per client; call ``remove()`` on the result to stop.
    """
    existing = vars(client).get(_INSTALLED)
    if isinstance(existing, RedisInstrumentation):
        return existing
    return RedisInstrumentation(client, telemetry, clock=clock).install()
