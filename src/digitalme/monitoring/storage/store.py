"""The embedded telemetry store: a :class:`~digitalme.monitoring.telemetry.sinks.TelemetrySink`.

One batch is one transaction: the items are bulk-loaded into their kind's table
(executemany of plain tuples on SQLite, binary COPY on PostgreSQL) and every
changed metric bucket is upserted by ``(series_id, resolution, start, instance)``:
the pipeline sends a bucket again, whole, each time it changes, so the stored
row is replaced, never added to.

Series ids are resolved before the batch transaction, in a short one of their
own (insert-if-missing with ``ON CONFLICT DO NOTHING`` then select, keys in a
fixed order so concurrent writers cannot deadlock) and cached in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Engine, Table, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from digitalme.monitoring.clock import Clock, SystemClock
from digitalme.monitoring.storage import schema
from digitalme.monitoring.storage.engine import (
    backend_name,
    create_engine,
    create_sqlite_writer,
    dumps_json,
)
from digitalme.monitoring.storage.errors import StoreWriteError
from digitalme.monitoring.storage.migrate import upgrade_async
from digitalme.monitoring.storage.queries import TelemetryQueries
from digitalme.monitoring.telemetry.items import (
    AnyItem,
    DependencyItem,
    EventItem,
    ExceptionItem,
    RequestItem,
    SecurityEventItem,
)
from digitalme.monitoring.telemetry.sinks import SeriesKey, TelemetryBatch
from digitalme.monitoring.telemetry.sketch import Bucket, sketch_to_bytes

MAX_KEY_LENGTH = 1024  # indexed text columns: PostgreSQL b-tree entries must stay small
# what the database refuses for the data itself: retrying the batch cannot help
_REFUSED: tuple[type[Exception], ...] = (
    sa_exc.IntegrityError,
    sa_exc.DataError,
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
    OverflowError,
)

Row = dict[str, Any]


def series_fingerprint(key: SeriesKey) -> str:
    """sha1 hex of the canonical JSON of the series name and its sorted dimensions."""
    canonical = json.dumps([key.name, sorted(key.dimensions)], separators=(",", ":"))
    return hashlib.sha1(canonical.encode(), usedforsecurity=False).hexdigest()


# Items go in as plain tuples through ``exec_driver_sql``: SQLAlchemy's per-row
# parameter processing costs more than SQLite's own work, and JSON is encoded by
# one reused encoder. A row is the table's columns in order (id left to the
# database): ts, instance, operation_id, weight, the kind's own columns,
# properties; the builders below follow it.
_COLUMNS: dict[Table, list[str]] = {
    table: [column.name for column in table.c if column.name != "id"]
    for table in schema.ITEM_TABLES.values()
}


def _op(item: AnyItem) -> str | None:
    return None if item.context is None else item.context.trace_id


# One comprehension per kind: the per-item cost is the point of this module.
def _requests(items: list[Any], instance: str) -> list[tuple[Any, ...]]:
    return [
        (i.time, instance, _op(i), i.weight, i.name[:MAX_KEY_LENGTH], i.duration_ms,
         i.status_code, i.success, dumps_json(i.properties))
        for i in items
    ]  # fmt: skip


def _dependencies(items: list[Any], instance: str) -> list[tuple[Any, ...]]:
    return [
        (i.time, instance, _op(i), i.weight, i.type, i.target, i.name[:MAX_KEY_LENGTH], i.data,
         i.duration_ms, i.success, i.result_code, dumps_json(i.properties))
        for i in items
    ]  # fmt: skip


def _exceptions(items: list[Any], instance: str) -> list[tuple[Any, ...]]:
    return [
        (i.time, instance, _op(i), i.weight, i.type[:MAX_KEY_LENGTH], i.message, i.stack,
         str(i.severity), dumps_json(i.properties))
        for i in items
    ]  # fmt: skip


def _events(items: list[Any], instance: str) -> list[tuple[Any, ...]]:
    return [
        (i.time, instance, _op(i), i.weight, i.name[:MAX_KEY_LENGTH], dumps_json(i.measurements),
         dumps_json(i.properties))
        for i in items
    ]  # fmt: skip


def _security_events(items: list[Any], instance: str) -> list[tuple[Any, ...]]:
    return [
        (i.time, instance, _op(i), i.weight, i.event_type[:MAX_KEY_LENGTH], str(i.severity),
         i.details, i.client_ip, i.user_id, dumps_json(i.properties))
        for i in items
    ]  # fmt: skip


_Builder = Callable[[list[Any], str], list[tuple[Any, ...]]]
_BUILDERS: dict[type, tuple[Table, _Builder]] = {
    RequestItem: (schema.requests, _requests),
    DependencyItem: (schema.dependencies, _dependencies),
    ExceptionItem: (schema.exceptions, _exceptions),
    EventItem: (schema.events, _events),
    SecurityEventItem: (schema.security_events, _security_events),
}


def item_rows(items: Iterable[AnyItem], instance: str) -> dict[Table, list[tuple[Any, ...]]]:
    """The items as positional rows per table (columns in table order, without ``id``)."""
    by_type: dict[type, list[Any]] = {}
    for item in items:
        kind = type(item)
        group = by_type.get(kind)
        if group is None:
            by_type[kind] = group = []
        group.append(item)
    rows: dict[Table, list[tuple[Any, ...]]] = {}
    for kind, group in by_type.items():
        table, build = _BUILDERS[kind]
        rows[table] = build(group, instance)
    return rows


# SQLite's bound-parameter limit (SQLITE_MAX_VARIABLE_NUMBER): 32766 since 3.32, 999 before.
SQLITE_MAX_VARIABLES = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999


def sqlite_multirow_insert(table: Table, count: int) -> str:
    """``INSERT`` of ``count`` rows in one statement (no ``id``; qmark style).

    One statement per few thousand rows instead of ``executemany``: the SQLite
    driver releases the GIL around each statement step and takes it back after,
    so with ``executemany`` a writer thread waits for the GIL once per row and,
    while the event loop is busy, progresses at a few hundred rows a second.
    """
    columns = _COLUMNS[table]
    row = "(" + ",".join("?" * len(columns)) + ")"
    # Names come from our own schema and every value is a bound parameter.
    head = f"INSERT INTO {table.name} ({','.join(columns)}) VALUES "  # noqa: S608
    return head + ",".join(itertools.repeat(row, count))


class TelemetryStore:
    """The telemetry store on SQLite or PostgreSQL; ``query`` reads it.

    The URL is kept private and never appears in messages (it may hold a
    password). Failures raise :class:`StoreWriteError`; the pipeline retries.
    """

    name = "store"

    def __init__(self, url: str, *, clock: Clock | None = None) -> None:
        self._url = url
        self.backend = backend_name(url)
        self.clock: Clock = clock or SystemClock()
        self.engine: AsyncEngine = create_engine(url)
        self.query = TelemetryQueries(self.engine)
        self._rows_per_insert = {t: SQLITE_MAX_VARIABLES // len(c) for t, c in _COLUMNS.items()}
        self._full_inserts: dict[Table, str] = {}
        self._writer = create_sqlite_writer(url) if self.backend == "sqlite" else None
        postgres = self.backend == "postgresql"
        self.dialect_insert: Any = postgresql.insert if postgres else sqlite.insert
        self._series_ids: dict[SeriesKey, int] = {}

    @classmethod
    async def open(
        cls, url: str, *, clock: Clock | None = None, migrate: bool = True
    ) -> TelemetryStore:
        """A store on ``url``, its migrations applied first unless ``migrate`` is False."""
        store = cls(url, clock=clock)
        if migrate:
            await store.migrate()
        return store

    def __repr__(self) -> str:
        return f"TelemetryStore(backend={self.backend!r})"

    async def migrate(self) -> None:
        """Apply the store's migrations to its database."""
        await upgrade_async(self._url)

    async def write(self, batch: TelemetryBatch) -> None:
        """Persist ``batch`` in one transaction; raise :class:`StoreWriteError` on failure.

        ``permanent`` on the error tells the pipeline whether retrying can help:
        items that cannot become rows or that the database refuses are permanent,
        an unreachable, slow or busy database is not.
        """
        try:
            rows_by_table = item_rows(batch.items, batch.instance)
            buckets = {
                (key, int(bucket.resolution), float(bucket.start)): bucket
                for key, bucket in batch.buckets
                if bucket.count > 0
            }
            # cumulative like buckets: the latest sketch of a minute wins
            latest = {float(minute): bytes(sketch) for minute, sketch in batch.users}
            user_rows = [
                {"minute": minute, "instance": batch.instance, "sketch": sketch}
                for minute, sketch in sorted(latest.items())
            ]
        except Exception as exc:
            raise StoreWriteError(exc, permanent=True) from None
        try:
            await self._write(rows_by_table, buckets, batch.instance, user_rows)
        except _REFUSED as exc:
            raise StoreWriteError(exc, permanent=True) from None
        except Exception as exc:
            raise StoreWriteError(exc, permanent=False) from None

    async def close(self) -> None:
        """Close the connection pools."""
        await self.engine.dispose()
        if self._writer is not None:
            self._writer.dispose()

    async def _write(
        self,
        rows_by_table: Mapping[Table, list[tuple[Any, ...]]],
        buckets: Mapping[tuple[SeriesKey, int, float], Bucket],
        instance: str,
        user_rows: list[Row],
    ) -> None:
        if buckets:
            await self.series_ids({key for key, _, _ in buckets})
        # sorted by primary key: concurrent upserts lock rows in the same order
        bucket_rows = sorted(
            (
                _bucket_row(self._series_ids[key], bucket, instance)
                for (key, _, _), bucket in buckets.items()
            ),
            key=_bucket_order,
        )
        if self._writer is not None:
            await asyncio.to_thread(
                self._write_sqlite, self._writer, rows_by_table, bucket_rows, user_rows
            )
            return
        async with self.engine.begin() as connection:
            if rows_by_table:
                await self._copy(connection, rows_by_table)
            if bucket_rows:
                await connection.execute(self.bucket_upsert(), bucket_rows)
            if user_rows:
                await connection.execute(self.users_upsert(), user_rows)

    def _write_sqlite(
        self,
        writer: Engine,
        rows_by_table: Mapping[Table, list[tuple[Any, ...]]],
        bucket_rows: list[Row],
        user_rows: list[Row],
    ) -> None:
        """One transaction on a worker thread (see :func:`create_sqlite_writer`); the items
        go in multi-row statements of at most SQLite's parameter limit each."""
        with writer.begin() as connection:
            for table, rows in rows_by_table.items():
                per_statement = self._rows_per_insert[table]
                for offset in range(0, len(rows), per_statement):
                    chunk = rows[offset : offset + per_statement]
                    connection.exec_driver_sql(
                        self._multirow_insert(table, len(chunk)),
                        tuple(itertools.chain.from_iterable(chunk)),
                    )
            if bucket_rows:
                connection.execute(self.bucket_upsert(), bucket_rows)
            if user_rows:
                connection.execute(self.users_upsert(), user_rows)

    def _multirow_insert(self, table: Table, count: int) -> str:
        if count != self._rows_per_insert[table]:
            return sqlite_multirow_insert(table, count)
        sql = self._full_inserts.get(table)
        if sql is None:
            sql = self._full_inserts[table] = sqlite_multirow_insert(table, count)
        return sql

    async def _copy(
        self, connection: AsyncConnection, rows_by_table: Mapping[Table, list[tuple[Any, ...]]]
    ) -> None:
        """Bulk-load items with PostgreSQL's binary COPY, inside the batch transaction."""
        await connection.exec_driver_sql("SELECT 1")  # makes the driver open the transaction
        driver: Any = (await connection.get_raw_connection()).driver_connection
        for table, rows in rows_by_table.items():
            await driver.copy_records_to_table(table.name, records=rows, columns=_COLUMNS[table])

    def bucket_upsert(self) -> Any:
        """The dialect's upsert of metric buckets (whole rows replace stored ones)."""
        table = schema.metric_buckets
        statement = self.dialect_insert(table)
        excluded = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=[table.c.series_id, table.c.resolution, table.c.start, table.c.instance],
            set_={name: excluded[name] for name in ("count", "sum", "min", "max", "sketch")},
        )

    def users_upsert(self) -> Any:
        """The dialect's upsert of active-user sketches (a newer sketch replaces the stored one)."""
        table = schema.active_users
        statement = self.dialect_insert(table)
        return statement.on_conflict_do_update(
            index_elements=[table.c.minute, table.c.instance],
            set_={"sketch": statement.excluded.sketch},
        )

    async def series_ids(self, keys: Iterable[SeriesKey]) -> Mapping[SeriesKey, int]:
        """The ids of ``keys``' series, creating the missing ones (safe across writers)."""
        missing = sorted(
            {key for key in keys if key not in self._series_ids},
            key=series_fingerprint,
        )
        if missing:
            async with self.engine.begin() as connection:
                found = await _resolve_series(connection, self.dialect_insert, missing)
            self._series_ids.update(found)
        return self._series_ids


async def _resolve_series(
    connection: AsyncConnection, insert: Any, keys: Sequence[SeriesKey]
) -> dict[SeriesKey, int]:
    table = schema.metric_series
    by_fingerprint = {series_fingerprint(key): key for key in keys}
    rows = [
        {"fingerprint": fingerprint, "name": key.name[:MAX_KEY_LENGTH], "dimensions": key.dims()}
        for fingerprint, key in by_fingerprint.items()
    ]
    # in fingerprint order: concurrent writers take the unique-index locks in the same order
    await connection.execute(
        insert(table).on_conflict_do_nothing(index_elements=[table.c.fingerprint]), rows
    )
    result = await connection.execute(
        select(table.c.fingerprint, table.c.id).where(table.c.fingerprint.in_(list(by_fingerprint)))
    )
    return {by_fingerprint[fingerprint]: series_id for fingerprint, series_id in result}


def _bucket_order(row: Row) -> tuple[int, int, float]:
    return row["series_id"], row["resolution"], row["start"]


def _bucket_row(series_id: int, bucket: Bucket, instance: str) -> Row:
    return {
        "series_id": series_id,
        "resolution": int(bucket.resolution),
        "start": float(bucket.start),
        "instance": instance,
        "count": bucket.count,
        "sum": bucket.sum,
        "min": bucket.min,
        "max": bucket.max,
        "sketch": sketch_to_bytes(bucket.sketch),
    }
