"""SQLAlchemy statements as ``SQL`` dependencies and ``Database.Query.*`` metrics.

Installed per engine with SQLAlchemy's own event API (``before_cursor_execute``,
``after_cursor_execute``, ``handle_error``), so nothing global is patched and
only the engines given to :func:`instrument_engine` are observed. Each statement
sent to the database becomes:

- a dependency: type ``SQL``, target ``dialect/database`` (never the host, user
  or password), name ``SELECT users`` (statement kind and first table), data
  the statement text with string literals blanked and truncated (bound
  parameters are never read), duration and success;
- the plan's ``record_database_query``: ``Database.Query.Duration`` (ms) and
  ``Database.Query.Count`` (1) with dimensions ``QueryType``, ``TableName``
  (when there is one) and ``Success``, plus a ``Database.Query.Failed`` event
  for a failed statement.

This runs on every query, so the hot path is two ``perf_counter`` calls, one
dict lookup and the appends of the telemetry client: a statement's kind,
table, display text and dimension sets are parsed once (a small regex over its
head) and cached per statement string in a bounded dict. SQLAlchemy reuses the
compiled string object, whose hash Python caches, so a hit does not even
rehash the text.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExceptionContext, ExecutionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from digitalme.monitoring.clock import Clock
from digitalme.monitoring.telemetry.client import TelemetryClient

__all__ = [
    "DEPENDENCY_TYPE",
    "QUERY_COUNT_METRIC",
    "QUERY_DURATION_METRIC",
    "QUERY_FAILED_EVENT",
    "SqlInstrumentation",
    "StatementInfo",
    "describe_statement",
    "instrument_engine",
]

DEPENDENCY_TYPE = "SQL"
QUERY_DURATION_METRIC = "Database.Query.Duration"
QUERY_COUNT_METRIC = "Database.Query.Count"
QUERY_FAILED_EVENT = "Database.Query.Failed"
OK = "OK"

MAX_DATA_CHARS = 1000  # the statement text kept as the dependency's data
TRUNCATED = "…"
# How much of a statement the table search reads: ORM SELECTs list every column
# before FROM, so the first 200 characters often end before the table.
_PARSE_CHARS = 2000
_MAX_KIND_CHARS = 20
_MAX_TABLE_CHARS = 100

# Where the time of a statement in flight is kept: on its ExecutionContext (one
# per statement, gone with it) or, for the rare executions without one, on the
# Connection. Both are plain objects with a __dict__.
_STARTED = "_digitalme_sql_started"
# The instrumentation installed on an engine, so that installing twice is harmless.
_INSTALLED = "_digitalme_sql_instrumentation"

_KIND = re.compile(r"\s*(?:(?:--[^\n]*(?:\n|$)|/\*.*?\*/)\s*)*([A-Za-z]+)", re.DOTALL)
_IDENT = r'(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[\w$]+)(?:\s*\.\s*(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[\w$]+))*'
_FROM = re.compile(rf"\bFROM\s+({_IDENT})", re.IGNORECASE)
_INTO = re.compile(rf"\bINTO\s+({_IDENT})", re.IGNORECASE)
# Matched right after the kind keyword: UPDATE [OR REPLACE] [ONLY] t, TRUNCATE [TABLE] t.
_UPDATE = re.compile(rf"\s+(?:OR\s+\w+\s+)?(?:ONLY\s+)?({_IDENT})", re.IGNORECASE)
_TRUNCATE = re.compile(rf"\s+(?:TABLE\s+)?(?:ONLY\s+)?({_IDENT})", re.IGNORECASE)
_DDL = re.compile(
    rf"\b(?:TABLE|VIEW|INDEX|SEQUENCE|TYPE)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?({_IDENT})",
    re.IGNORECASE,
)
# The search for each kind's table, and whether it starts right after the keyword.
_TABLE_SEARCH: dict[str, tuple[re.Pattern[str], bool]] = {
    "SELECT": (_FROM, False),
    "WITH": (_FROM, False),
    "DELETE": (_FROM, False),
    "INSERT": (_INTO, False),
    "REPLACE": (_INTO, False),
    "MERGE": (_INTO, False),
    "UPDATE": (_UPDATE, True),
    "TRUNCATE": (_TRUNCATE, True),
    "CREATE": (_DDL, False),
    "DROP": (_DDL, False),
    "ALTER": (_DDL, False),
}
_QUOTES = str.maketrans("", "", '"`[] ')
# A string literal, also one cut open by the truncation: its content never
# reaches telemetry (bound parameters are safe; inlined literals may not be).
_LITERAL = re.compile(r"'(?:[^']|'')*(?:'|$)")


@dataclass(frozen=True, slots=True)
class StatementInfo:
    """What telemetry says about one statement string, computed once."""

    kind: str
    table: str | None
    name: str
    data: str
    succeeded: dict[str, object]
    failed: dict[str, object]


def describe_statement(statement: str) -> StatementInfo:
    """Parse a statement's kind and first table, and its display text (no literals)."""
    head = statement[:_PARSE_CHARS]
    match = _KIND.match(head)
    kind = match.group(1).upper()[:_MAX_KIND_CHARS] if match else "SQL"
    table: str | None = None
    search = _TABLE_SEARCH.get(kind)
    if search is not None and match is not None:
        pattern, anchored = search
        found = pattern.match(head, match.end()) if anchored else pattern.search(head)
        if found is not None:
            table = found.group(1).translate(_QUOTES)[:_MAX_TABLE_CHARS] or None
    data = _LITERAL.sub("?", statement[:MAX_DATA_CHARS].strip())
    if len(statement) > MAX_DATA_CHARS:
        data += TRUNCATED
    dimensions: dict[str, object] = {"QueryType": kind}
    if table is not None:  # the plan adds TableName only when there is one
        dimensions["TableName"] = table
    return StatementInfo(
        kind=kind,
        table=table,
        name=kind if table is None else f"{kind} {table}",
        data=data,
        # Spelled as the series registry spells booleans (and PerformanceMonitor's
        # record_database_query), so both feed the same series and events read alike.
        succeeded={**dimensions, "Success": "true"},
        failed={**dimensions, "Success": "false"},
    )


def database_target(engine: Engine) -> str:
    """``dialect/database``: never the host, user or password of the URL."""
    database = engine.url.database or ""
    if engine.dialect.name == "sqlite" and database not in ("", ":memory:"):
        database = os.path.basename(database)  # a file path says where, not what
    return f"{engine.dialect.name}/{database}" if database else engine.dialect.name


class SqlInstrumentation:
    """The listeners installed on one engine; :meth:`remove` takes them off."""

    def __init__(
        self,
        engine: Engine,
        telemetry: TelemetryClient,
        clock: Clock,
        *,
        max_cached_statements: int = 1000,
    ) -> None:
        self.engine = engine
        self.target = database_target(engine)
        self._telemetry = telemetry
        self._clock = clock
        self._max_cached = max_cached_statements
        self._cache: dict[str, StatementInfo] = {}
        # Bound once: event.remove() needs the very objects that were listened.
        self._listeners: tuple[tuple[str, Any], ...] = (
            ("before_cursor_execute", self._before),
            ("after_cursor_execute", self._after),
            ("handle_error", self._error),
        )

    @property
    def cached_statements(self) -> int:
        return len(self._cache)

    def install(self) -> SqlInstrumentation:
        """Start observing the engine (done by :func:`instrument_engine`)."""
        for name, listener in self._listeners:
            if not event.contains(self.engine, name, listener):
                event.listen(self.engine, name, listener)
        self.engine.__dict__[_INSTALLED] = self
        return self

    def remove(self) -> None:
        """Stop observing the engine."""
        for name, listener in self._listeners:
            if event.contains(self.engine, name, listener):
                event.remove(self.engine, name, listener)
        if self.engine.__dict__.get(_INSTALLED) is self:
            del self.engine.__dict__[_INSTALLED]

    # -- listeners (every statement passes here: keep them lean) --------------

    def _before(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> None:
        (context if context is not None else conn).__dict__[_STARTED] = time.perf_counter()

    def _after(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> None:
        started = (context if context is not None else conn).__dict__.pop(_STARTED, None)
        if started is not None:
            self._record(statement, time.perf_counter() - started, None)

    def _error(self, exception_context: ExceptionContext) -> None:
        # A handler that raises would replace the application's exception, so
        # nothing may escape here (tests run the client strict and see it anyway).
        try:
            holder = exception_context.execution_context or exception_context.connection
            if holder is None or exception_context.statement is None:
                return
            started = holder.__dict__.pop(_STARTED, None)
            if started is None:  # failed before reaching the database: not a call
                return
            duration = time.perf_counter() - started
            # SQLAlchemy's wrapper names a failure alike on every driver
            # (IntegrityError, not asyncpg's UniqueViolationError); what it does
            # not wrap (cancellation) keeps its own type.
            error = exception_context.sqlalchemy_exception or exception_context.original_exception
            self._record(exception_context.statement, duration, error)
        except Exception:
            self._telemetry.report_internal_error("sql.handle_error")

    def _record(self, statement: str, duration: float, error: BaseException | None) -> None:
        try:
            info = self._cache.get(statement)
            if info is None:
                info = self._describe(statement)
            telemetry = self._telemetry
            success = error is None
            telemetry.track_dependency(
                DEPENDENCY_TYPE,
                info.name,
                info.data,
                self._clock.time() - duration,
                duration,
                success,
                target=self.target,
                result_code=OK if error is None else type(error).__name__,
            )
            dimensions = info.succeeded if success else info.failed
            telemetry.track_metric(QUERY_DURATION_METRIC, duration * 1000.0, dimensions)
            telemetry.track_metric(QUERY_COUNT_METRIC, 1.0, dimensions)
            if not success:
                telemetry.track_event(QUERY_FAILED_EVENT, dimensions)
        except Exception:
            self._telemetry.report_internal_error("sql")

    def _describe(self, statement: str) -> StatementInfo:
        info = describe_statement(statement)
        cache = self._cache
        if len(cache) >= self._max_cached:
            # Oldest first: statements in steady use are re-added at once, while
            # one-off texts (inlined values, IN lists of every length) age out.
            del cache[next(iter(cache))]
        cache[statement] = info
        return info


def instrument_engine(
    engine: AsyncEngine | Engine,
    telemetry: TelemetryClient,
    clock: Clock,
    *,
    max_cached_statements: int = 1000,
) -> SqlInstrumentation:
    """Record every statement of ``engine`` (sync or async) as a dependency and metrics.

    Idempotent per engine and listener set; call ``remove()`` on the result to stop.
    """
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    existing = sync_engine.__dict__.get(_INSTALLED)
    if isinstance(existing, SqlInstrumentation):
        return existing
    return SqlInstrumentation(
        sync_engine, telemetry, clock, max_cached_statements=max_cached_statements
    ).install()
