"""Reading metric buckets: resolution choice and stitching of roll-up levels.

Roll-ups (:mod:`.retention`) record in ``telemetry_rollups`` up to where each
coarse level is complete. A query at resolution R reads R buckets up to that
point and the next finer level after it, down to the 10 s buckets for the newest
minutes: every part of a window is read once, from the coarsest level that has it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TypeVar

from sqlalchemy import RowMapping, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from digitalme.monitoring.storage import schema

RESOLUTIONS = schema.RESOLUTIONS
YIELD_EVERY = 256  # rows decoded between two yields to the event loop

Segment = tuple[int, float, float]  # resolution, first start (inclusive), last start (exclusive)
T = TypeVar("T")


async def cooperatively(rows: Sequence[T]) -> AsyncIterator[T]:
    """Iterate ``rows``, yielding to the event loop now and then.

    Decoding a sketch costs tens to hundreds of microseconds: a long window or a
    roll-up must not stall the requests served by the same loop.
    """
    for index, row in enumerate(rows):
        if index and index % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        yield row


async def choose_resolution(
    connection: AsyncConnection, allowed: Sequence[int], start: float
) -> int:
    """The finest allowed resolution whose buckets reach back to ``start``, else the finest."""
    table = schema.metric_buckets
    for resolution in allowed:
        earliest = (
            await connection.execute(
                select(func.min(table.c.start)).where(table.c.resolution == resolution)
            )
        ).scalar()
        if earliest is not None and earliest <= start:
            return resolution
    return allowed[0]


async def segments(
    connection: AsyncConnection, resolution: int, start: float, end: float
) -> list[Segment]:
    """Which level to read for which part of ``[start, end)``, coarsest first.

    A level serves up to where its roll-up is done; the finest serves the rest.
    """
    result = await connection.execute(select(schema.rollups))
    done = {row.resolution: row.done_until for row in result}
    parts: list[Segment] = []
    cursor = start
    for level in reversed(RESOLUTIONS[: RESOLUTIONS.index(resolution) + 1]):
        upper = end if level == RESOLUTIONS[0] else min(end, done.get(level, -math.inf))
        if upper > cursor:
            parts.append((level, cursor, upper))
            cursor = upper
    return parts


async def read_buckets(
    connection: AsyncConnection,
    series: Mapping[int, object],
    resolution: int,
    start: float,
    end: float,
    *,
    sketch: bool,
) -> list[RowMapping]:
    """Stored buckets of ``series`` starting in ``[start, end)``, stitched at ``resolution``.

    The sketch column is read only when asked: counts and sums need no decoding.
    """
    table = schema.metric_buckets
    columns = [table.c.series_id, table.c.start, table.c.count, table.c.sum]
    columns += [table.c.min, table.c.max, table.c.resolution]
    if sketch:
        columns.append(table.c.sketch)
    rows: list[RowMapping] = []
    for level, lower, upper in await segments(connection, resolution, start, end):
        statement = (
            select(*columns)
            .where(table.c.series_id.in_(sorted(series)), table.c.resolution == level)
            .where(table.c.start >= lower, table.c.start < upper)
            .order_by(table.c.series_id, table.c.start, table.c.instance)
        )
        rows.extend((await connection.execute(statement)).mappings())
    return rows
