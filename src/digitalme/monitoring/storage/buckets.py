"""Reading metric buckets: resolution choice and stitching of roll-up levels.

Roll-ups (:mod:`.retention`) record in ``telemetry_rollups`` up to where each
coarse level is complete (``done_until``). A read at resolution R is made of
*segments* ``(level, first start, last start)``, each reading the ``level``
buckets whose start is in ``[first, last)``; together they cover the window
once, with no bucket counted twice or missed at their boundaries:

- :func:`stitch` (per-step reads, explicit resolutions): R buckets up to
  R's ``done_until`` and the next finer level after it, down to the 10 s buckets
  for the newest minutes.
- :meth:`Levels.window_segments` (a whole window merged into one bucket): every level
  coarser than R also serves the *whole* periods it holds inside the window,
  coarsest first, between its earliest stored bucket and its ``done_until``;
  the edges around them, cut at the next finer level's period boundaries, and
  what no roll-up covers yet are read as :func:`stitch` would. A 24 h window
  at 60 s thus reads about 23 hour buckets, at most 22 five-minute buckets and 8
  minute buckets per series (and the 10 s buckets not rolled up yet), not 1,440.

Every boundary between two segments is a multiple of the coarser one's level
(and so of every finer one), so a coarse bucket holds exactly the finer buckets
starting in its period: the merge equals reading everything at R (as long as
the roll-ups are right; a fine bucket updated after its period was rolled up is
seen at the fine level only, see :mod:`.retention`).
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Double,
    Integer,
    RowMapping,
    String,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from digitalme.monitoring.storage import schema

RESOLUTIONS = schema.RESOLUTIONS
YIELD_EVERY = 256  # rows decoded between two yields to the event loop

Segment = tuple[int, float, float]  # resolution, first start (inclusive), last start (exclusive)
Span = tuple[float, float]  # a level's whole periods on hand: earliest start, done until
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


_MARKS = select(schema.rollups)


async def rollup_marks(connection: AsyncConnection) -> dict[int, float]:
    """How far each coarse level is rolled up: resolution -> done until."""
    result = await connection.execute(_MARKS)
    return {row.resolution: row.done_until for row in result}


@dataclass(frozen=True, slots=True)
class Levels:
    """What a read needs to know of the stored levels: each one's roll-up mark (``done``,
    coarse levels only) and earliest bucket (``earliest``, levels holding any)."""

    done: Mapping[int, float]
    earliest: Mapping[int, float]

    def choose(self, allowed: Sequence[int], start: float) -> int:
        """The finest allowed resolution whose buckets reach back to ``start``, else the
        finest."""
        for resolution in allowed:
            earliest = self.earliest.get(resolution)
            if earliest is not None and earliest <= start:
                return resolution
        return allowed[0]

    def window_segments(self, resolution: int, start: float, end: float) -> list[Segment]:
        """As :meth:`Levels.window_segments`."""
        spans = {
            level: (self.earliest[level], self.done[level])
            for level in RESOLUTIONS
            # retention may have deleted the oldest periods
            if level > resolution and level in self.done and level in self.earliest
        }
        return whole_periods(resolution, start, end, self.done, spans)


@functools.cache
def _levels_statement() -> Any:
    """Every level's earliest bucket and roll-up mark as one row (built once)."""
    table, marks = schema.metric_buckets, schema.rollups
    columns = []
    for level in RESOLUTIONS:
        earliest = select(func.min(table.c.start)).where(table.c.resolution == level)
        done = select(marks.c.done_until).where(marks.c.resolution == level)
        columns += [earliest.scalar_subquery(), done.scalar_subquery()]
    return select(*columns)


async def read_levels(connection: AsyncConnection) -> Levels:
    """Every level's roll-up mark and earliest bucket, in one query (index lookups)."""
    row = (await connection.execute(_levels_statement())).one()
    earliest_of = dict(zip(RESOLUTIONS, row[0::2], strict=True))
    done_of = dict(zip(RESOLUTIONS, row[1::2], strict=True))
    return Levels(
        done={level: float(done) for level, done in done_of.items() if done is not None},
        earliest={level: float(first) for level, first in earliest_of.items() if first is not None},
    )


def stitch(resolution: int, start: float, end: float, done: Mapping[int, float]) -> list[Segment]:
    """:func:`stitch` given the roll-up marks ``done`` (resolution -> done until)."""
    parts: list[Segment] = []
    cursor = start
    for level in reversed(RESOLUTIONS[: RESOLUTIONS.index(resolution) + 1]):
        upper = end if level == RESOLUTIONS[0] else min(end, done.get(level, -math.inf))
        if upper > cursor:
            parts.append((level, cursor, upper))
            cursor = upper
    return parts


def _ceil(value: float, level: int) -> float:
    return math.ceil(value / level) * level if math.isfinite(value) else value


def _floor(value: float, level: int) -> float:
    return math.floor(value / level) * level if math.isfinite(value) else value


def whole_periods(
    resolution: int,
    start: float,
    end: float,
    done: Mapping[int, float],
    spans: Mapping[int, Span],
) -> list[Segment]:
    """:meth:`Levels.window_segments` given the roll-up marks and each coarse level's ``spans``.

    The coarsest level in ``spans`` serves its whole periods inside ``[start, end)``
    and its span; the parts before and after them are split the same way by the
    next finer level, and what is left is :func:`stitch`-ed at ``resolution``.
    Segments come in time order.
    """
    if start >= end:
        return []
    for level in sorted((level for level in spans if level > resolution), reverse=True):
        earliest, until = spans[level]
        lower = max(_ceil(start, level), _ceil(earliest, level))
        upper = min(_floor(end, level), _floor(until, level))
        if lower < upper:
            finer = {key: span for key, span in spans.items() if key < level}
            return [
                *whole_periods(resolution, start, lower, done, finer),
                (level, lower, upper),
                *whole_periods(resolution, upper, end, done, finer),
            ]
    return stitch(resolution, start, end, done)


async def read_segments(
    connection: AsyncConnection,
    series: Mapping[int, object],
    parts: Sequence[Segment],
    *,
    sketch: bool,
    merged: bool = False,
    instance: str | None = None,
) -> list[RowMapping]:
    """Stored buckets of ``series`` in each of the ``parts``, in their order.

    The sketch column is read only when asked: counts and sums need no decoding.
    ``merged`` (without sketches) adds up every series' buckets of one start in
    the database: one row per start (``start``, ``count``, ``sum``, ``min``,
    ``max``, ``resolution``) instead of one per series and instance. Every
    instance's buckets are read, or only ``instance``'s.
    """
    if not parts:
        return []
    statement = _segments_statement(
        tuple(level for level, _, _ in parts), sketch, merged and not sketch, instance is not None
    )
    parameters: dict[str, Any] = {"series": sorted(series)}
    if instance is not None:
        parameters["instance"] = instance
    for index, (_, lower, upper) in enumerate(parts):
        parameters[f"lower_{index}"], parameters[f"upper_{index}"] = lower, upper
    return list((await connection.execute(statement, parameters)).mappings())


@functools.lru_cache(maxsize=256)
def _segments_statement(levels: tuple[int, ...], sketch: bool, merged: bool, one: bool) -> Any:
    """The query of :func:`read_segments` for parts at ``levels``, built once per shape: the
    series, each part's bounds and the instance (when ``one``) are bound parameters
    (building and caching a statement costs more than running a small one)."""
    table = schema.metric_buckets
    statements: list[Any] = []
    for index, level in enumerate(levels):
        where = [
            table.c.series_id.in_(bindparam("series", expanding=True)),
            table.c.resolution == level,
            table.c.start >= bindparam(f"lower_{index}", type_=Double),
            table.c.start < bindparam(f"upper_{index}", type_=Double),
        ]
        if one:
            where.append(table.c.instance == bindparam("instance", type_=String))
        part = literal(index, Integer).label("part")
        if merged:
            # grouped by an expression, not the column: SQLite would otherwise walk the
            # (resolution, start) index for its order, through every series' buckets of the
            # range, instead of each asked series' own through the primary key (4x faster)
            start = (table.c.start + literal_column("0")).label("start")  # inline: one expression
            statement = (
                select(
                    part,
                    start,
                    # PostgreSQL sums BIGINT as NUMERIC (a Decimal): keep it an integer
                    cast(func.sum(table.c.count), BigInteger).label("count"),
                    func.sum(table.c.sum).label("sum"),
                    func.min(table.c.min).label("min"),
                    func.max(table.c.max).label("max"),
                    func.max(table.c.resolution).label("resolution"),
                )
                .where(*where)
                .group_by(start)
            )
        else:
            columns = [part, table.c.series_id, table.c.start, table.c.count, table.c.sum]
            columns += [table.c.min, table.c.max, table.c.resolution, table.c.instance]
            if sketch:
                columns.append(table.c.sketch)
            statement = select(*columns).where(*where)
        statements.append(statement)
    # one query for every part, in their order (each part's rows as one query would give)
    order = ["part", "start"] if merged else ["part", "series_id", "start", "instance"]
    if len(statements) == 1:
        return statements[0].order_by(*(statements[0].selected_columns[c] for c in order))
    query = union_all(*statements)
    return query.order_by(*(query.selected_columns[c] for c in order))
