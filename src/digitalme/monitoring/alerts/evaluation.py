"""What a rule's condition reads: one number per group over the rule's window.

**Windows and buckets.** The live aggregates are 10 s buckets (the setting
``telemetry.bucket_seconds``). A window of W seconds covers the newest
``ceil(W / 10)`` buckets, the last of them the one still filling, so a breach
is seen on the first engine tick after the value is folded (within about half
a second at the default ticks). The covered span is therefore between W - 10
and W seconds; rates divide by the span actually covered.

**Aggregations** (per group, over every value recorded in the window by the
series that pass the filters): ``avg``, ``sum``, ``count`` (number of values),
``min``, ``max``, ``p50``/``p90``/``p95``/``p99`` (DDSketch, 1 % relative
error), ``rate_per_second`` and ``rate_per_minute`` (number of values per
second or minute of covered span), and ``ratio``: the numerator's count (or
sum, with ``ratio_of: sum``) over the denominator's, per group; the data
points of a ratio are the denominator's values.

**Cost.** Evaluating every rule on every tick must stay cheap with hundreds of
rules over thousands of series. Buckets other than the newest change rarely
(only values that arrive late), so per series and window the closed part is
kept between ticks and recomputed only when its value count changed; sketches
(the costly part) are merged per group from those cached parts. Identical
selections (same metric, filters, grouping and window) are computed once per
tick, whatever the number of rules sharing them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from digitalme.monitoring.alerts.bins import Bins
from digitalme.monitoring.alerts.matchers import Matcher, matches_all
from digitalme.monitoring.alerts.rules import Aggregation, AlertRule
from digitalme.monitoring.telemetry.aggregation import Totals
from digitalme.monitoring.telemetry.sinks import SeriesKey
from digitalme.monitoring.telemetry.sketch import Bucket

__all__ = [
    "Accumulator",
    "BucketSource",
    "LiveSource",
    "Sample",
    "StaticSource",
    "WindowReader",
    "bucket_range",
    "evaluate_rule",
]

GroupKey = tuple[str, ...]
MAX_MATCH_CACHE = 200_000


@dataclass(frozen=True, slots=True)
class Sample:
    """A rule's value for one group: ``points`` values were behind it (None: no data).

    ``group`` is the group's label values in ``group_by`` order; ``token`` the
    accumulators the value came from (the same objects tick after tick while the
    group's data do not change).
    """

    labels: Mapping[str, str]
    value: float | None
    points: int
    group: GroupKey = field(default=(), compare=False)
    token: tuple[object, ...] = field(default=(), compare=False, repr=False)


Skip = Callable[[GroupKey, tuple[object, ...]], bool]
"""``skip(group, token)``: True to leave a group out (the engine's shortcut for groups
whose data did not change since a tick where nothing was to be done)."""


@dataclass(slots=True)
class Accumulator:
    """Count, sum, extremes and (when asked) the merged sketch bins of many buckets."""

    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    bins: Bins | None = None
    quantiles: dict[float, float | None] = field(default_factory=dict, compare=False, repr=False)

    def add_bucket(self, bucket: Bucket, with_sketch: bool) -> None:
        if bucket.count == 0:
            return
        self.count += bucket.count
        self.sum += bucket.sum
        self.min = min(self.min, bucket.min)
        self.max = max(self.max, bucket.max)
        if with_sketch:
            if self.bins is None:
                self.bins = Bins()
            self.bins.add_sketch(bucket.sketch)

    def add(self, other: Accumulator) -> None:
        if other.count == 0:
            return
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other.bins is not None:
            if self.bins is None:
                self.bins = Bins()
            self.bins.add(other.bins)

    def copy(self) -> Accumulator:
        copied = Accumulator(self.count, self.sum, self.min, self.max)
        if self.bins is not None:
            copied.bins = self.bins.copy()
        return copied

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile within the sketch's 1 % (cached: several rules may ask)."""
        if q not in self.quantiles:
            found = None if self.bins is None else self.bins.quantile(q)
            self.quantiles[q] = None if found is None else min(max(found, self.min), self.max)
        return self.quantiles[q]


def bucket_range(window: float, now: float, resolution: int) -> tuple[float, float, float]:
    """``(first bucket start, last bucket start, covered seconds)`` of a window ending ``now``."""
    count = max(1, math.ceil(window / resolution - 1e-9))
    last = now - now % resolution
    first = last - (count - 1) * resolution
    return first, last, now - first


class BucketSource(Protocol):
    """Where buckets come from: the live aggregator, or buckets read from the store."""

    resolution: int

    def series(
        self, name: str
    ) -> Sequence[tuple[object, Mapping[str, str], Mapping[float, Bucket]]]:
        """``(series identity, dimensions, buckets by start)`` of every series of ``name``."""
        ...

    def written(self, identity: object) -> int | None:
        """How many values the series was ever given (None: not known).

        It only grows, so an unchanged figure means unchanged buckets: the reader
        then trusts its cached closed part without reading the buckets' counts.
        """
        ...


class LiveSource:
    """The live aggregator's buckets, indexed by metric name.

    With ``generation`` (the aggregator's ``series_generation``) the index is
    rebuilt by :meth:`refresh` only when series came or went; with ``totals``
    (the aggregator's cumulative totals) :meth:`written` is known.
    """

    def __init__(
        self,
        buckets: Mapping[SeriesKey, Mapping[float, Bucket]],
        resolution: int,
        totals: Mapping[SeriesKey, Totals] | None = None,
        generation: Callable[[], int] | None = None,
    ) -> None:
        self.resolution = resolution
        self._buckets = buckets
        self._totals = totals
        self._generation = generation
        self._indexed_at: int | None = None
        self._index: dict[str, list[tuple[object, Mapping[str, str], Mapping[float, Bucket]]]] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-index when series came or went (every call without ``generation``)."""
        generation = None if self._generation is None else self._generation()
        if generation is not None and generation == self._indexed_at:
            return
        self._indexed_at = generation
        self._index = {}
        for key, by_start in self._buckets.items():
            self._index.setdefault(key.name, []).append((key, dict(key.dimensions), by_start))

    def series(
        self, name: str
    ) -> Sequence[tuple[object, Mapping[str, str], Mapping[float, Bucket]]]:
        return self._index.get(name, ())

    def written(self, identity: object) -> int | None:
        if self._totals is None or not isinstance(identity, SeriesKey):
            return None
        totals = self._totals.get(identity)
        return None if totals is None else totals.count


@dataclass(slots=True)
class StaticSource:
    """Buckets given up front (read from the store, or built by ``alerts test``)."""

    resolution: int
    by_name: dict[str, list[tuple[object, Mapping[str, str], Mapping[float, Bucket]]]] = field(
        default_factory=dict
    )

    def series(
        self, name: str
    ) -> Sequence[tuple[object, Mapping[str, str], Mapping[float, Bucket]]]:
        return self.by_name.get(name, ())

    def written(self, identity: object) -> int | None:
        return None


@dataclass(slots=True)
class _Closed:
    """A series' buckets older than the newest one, over one window (cached between ticks).

    ``counts`` are the value counts of the buckets (newest first) when they were
    read: counts only grow, so equal counts mean unchanged buckets. ``version`` is
    their sum. ``written``: the source's :meth:`~BucketSource.written` figure
    less the newest bucket's count when they were read (None: not known).
    """

    last: float
    counts: tuple[int, ...]
    version: int
    numbers: Accumulator
    buckets: list[Bucket]
    sketch: Accumulator | None = None
    written: int | None = None

    def merged_sketch(self) -> Accumulator:
        if self.sketch is None:
            self.sketch = Accumulator()
            for bucket in self.buckets:
                self.sketch.add_bucket(bucket, True)
        return self.sketch


@dataclass(slots=True)
class _GroupSketch:
    last: float
    version: tuple[int, int]
    sketch: Accumulator


class WindowReader:
    """Group accumulators of a selection of series over a window, cached as described above.

    Call :meth:`begin` once per tick (with the source and the time), then
    :meth:`groups` for each selection.
    """

    def __init__(self) -> None:
        self._source: BucketSource | None = None
        self._now = 0.0
        self._closed: dict[tuple[object, int], _Closed] = {}
        self._closed_used: dict[tuple[object, int], _Closed] = {}
        self._group_sketches: dict[tuple[object, ...], _GroupSketch] = {}
        self._group_sketches_used: dict[tuple[object, ...], _GroupSketch] = {}
        self._memo: dict[tuple[object, ...], dict[GroupKey, Accumulator]] = {}
        self._results: dict[
            tuple[object, ...], tuple[tuple[float, int, int, int], Accumulator]
        ] = {}
        self._results_used: dict[
            tuple[object, ...], tuple[tuple[float, int, int, int], Accumulator]
        ] = {}
        self._matches: dict[tuple[object, ...], bool] = {}

    def begin(self, source: BucketSource, now: float) -> None:
        # Cache entries not used during the previous tick are dropped: bounded by what is read.
        if self._source is not None:
            self._closed, self._closed_used = self._closed_used, {}
            self._group_sketches, self._group_sketches_used = self._group_sketches_used, {}
            self._results, self._results_used = self._results_used, {}
        self._source = source
        self._now = now
        self._memo = {}
        if len(self._matches) > MAX_MATCH_CACHE:
            self._matches.clear()

    @property
    def now(self) -> float:
        return self._now

    @property
    def resolution(self) -> int:
        assert self._source is not None, "call begin() first"
        return self._source.resolution

    def groups(
        self,
        metric: str,
        matchers: tuple[Matcher, ...],
        group_by: tuple[str, ...],
        window: float,
        with_sketch: bool,
    ) -> dict[GroupKey, Accumulator]:
        """One accumulator per group of the series of ``metric`` that pass ``matchers``."""
        source = self._source
        assert source is not None, "call begin() first"
        resolution = source.resolution
        first, last, _ = bucket_range(window, self._now, resolution)
        count = round((last - first) / resolution) + 1
        signature = (metric, _matcher_key(matchers), group_by, count, with_sketch)
        memo = self._memo.get(signature)
        if memo is not None:
            return memo
        closed_starts = [last - i * resolution for i in range(1, count)]
        members: dict[GroupKey, list[tuple[_Closed, Bucket | None]]] = {}
        for identity, dims, by_start in source.series(metric):
            if matchers and not self._matched(identity, dims, matchers):
                continue
            current = by_start.get(last)
            closed = self._closed_part(identity, count, last, closed_starts, by_start, current)
            if closed.numbers.count == 0 and (current is None or current.count == 0):
                continue
            group = tuple(dims.get(label, "") for label in group_by)
            members.setdefault(group, []).append((closed, current))
        result: dict[GroupKey, Accumulator] = {}
        for group, parts in members.items():
            # unchanged since the previous tick (no new value anywhere): reuse it, and the
            # quantiles already computed from it
            version = (
                last,
                len(parts),
                sum(closed.version for closed, _ in parts),
                sum(current.count for _, current in parts if current is not None),
            )
            key = (*signature, group)
            previous = self._results_used.get(key) or self._results.get(key)
            if previous is not None and previous[0] == version:
                self._results_used[key] = previous
                result[group] = previous[1]
                continue
            if with_sketch:
                total = self._group_sketch(signature, group, last, parts).copy()
                for _, current in parts:
                    if current is not None:
                        total.add_bucket(current, True)
            else:
                total = Accumulator()
                for closed, current in parts:
                    total.add(closed.numbers)
                    if current is not None:
                        total.add_bucket(current, False)
            result[group] = total
            self._results_used[key] = (version, total)
        self._memo[signature] = result
        return result

    def _matched(
        self, identity: object, dims: Mapping[str, str], matchers: tuple[Matcher, ...]
    ) -> bool:
        key = (identity, *matchers)
        found = self._matches.get(key)
        if found is None:
            found = self._matches[key] = matches_all(matchers, dims)
        return found

    def _closed_part(
        self,
        identity: object,
        count: int,
        last: float,
        starts: list[float],
        by_start: Mapping[float, Bucket],
        current: Bucket | None,
    ) -> _Closed:
        key = (identity, count)
        used = self._closed_used.get(key)
        if used is not None:
            return used
        cached = self._closed.get(key)
        assert self._source is not None
        written = self._source.written(identity)
        if written is not None and current is not None:
            written -= current.count
        # Nothing written outside the newest bucket since: the closed part is as it was.
        if (
            cached is not None
            and cached.last == last
            and written is not None
            and cached.written == written
        ):
            self._closed_used[key] = cached
            return cached
        found = list(map(by_start.get, starts))
        counts = tuple(0 if b is None else b.count for b in found)
        if cached is not None and cached.last == last and cached.counts == counts:
            cached.written = written
            self._closed_used[key] = cached
            return cached
        buckets = [b for b in found if b is not None and b.count]
        fresh = _Closed(last, counts, sum(counts), _numbers(buckets), buckets, written=written)
        if cached is not None and cached.sketch is not None and cached.sketch.bins is not None:
            fresh.sketch = _moved_sketch(cached, fresh, last, starts, by_start)
        self._closed_used[key] = fresh
        return fresh

    def _group_sketch(
        self,
        signature: tuple[object, ...],
        group: GroupKey,
        last: float,
        parts: list[tuple[_Closed, Bucket | None]],
    ) -> Accumulator:
        """The merged sketch of the group's closed buckets (recomputed when they change)."""
        key = (*signature, group)
        version = (len(parts), sum(closed.version for closed, _ in parts))
        cached = self._group_sketches_used.get(key) or self._group_sketches.get(key)
        if cached is None or cached.last != last or cached.version != version:
            merged = Accumulator()
            for closed, _ in parts:
                merged.add(closed.merged_sketch())
            cached = _GroupSketch(last, version, merged)
        self._group_sketches_used[key] = cached
        return cached.sketch


def _numbers(buckets: list[Bucket]) -> Accumulator:
    """Count, sum and extremes of non-empty buckets (builtins over the list: no sketches)."""
    if not buckets:
        return Accumulator()
    return Accumulator(
        sum(b.count for b in buckets),
        sum(b.sum for b in buckets),
        min(b.min for b in buckets),
        max(b.max for b in buckets),
    )


def _moved_sketch(
    cached: _Closed,
    fresh: _Closed,
    last: float,
    starts: list[float],
    by_start: Mapping[float, Bucket],
) -> Accumulator | None:
    """The closed sketch after the window moved on by one bucket, from the previous one:
    minus the bucket that left, plus the one that closed (sketch bins subtract, DDSketches
    do not). None (recompute) unless every other bucket is exactly as it was read."""
    if not starts or cached.last != starts[0]:
        return None
    resolution = last - starts[0]
    left = by_start.get(last - (len(starts) + 1) * resolution)
    if fresh.counts[1:] != cached.counts[:-1] or (
        (0 if left is None else left.count) != cached.counts[-1]
    ):
        return None
    assert cached.sketch is not None
    bins = cached.sketch.bins
    assert bins is not None
    if left is not None and left.count:
        bins.subtract_sketch(left.sketch)
    closed = by_start.get(starts[0])
    if closed is not None and closed.count:
        bins.add_sketch(closed.sketch)
    cached.sketch = None  # its bins moved on: the old entry must not reuse them
    moved = Accumulator(
        fresh.numbers.count, fresh.numbers.sum, fresh.numbers.min, fresh.numbers.max, bins
    )
    return moved


def _matcher_key(matchers: tuple[Matcher, ...]) -> tuple[tuple[str, str, str], ...]:
    return tuple((m.label, str(m.op), m.value) for m in matchers)


def value_of(aggregation: Aggregation, total: Accumulator, span: float) -> float | None:
    """The aggregation's value of one group (None when it has no values)."""
    if total.count == 0:
        return None
    if aggregation is Aggregation.COUNT:
        return float(total.count)
    if aggregation is Aggregation.SUM:
        return total.sum
    if aggregation is Aggregation.AVG:
        return total.sum / total.count
    if aggregation is Aggregation.MIN:
        return total.min
    if aggregation is Aggregation.MAX:
        return total.max
    if aggregation is Aggregation.RATE_PER_SECOND:
        return total.count / span
    if aggregation is Aggregation.RATE_PER_MINUTE:
        return total.count * 60.0 / span
    quantile = aggregation.quantile
    assert quantile is not None
    return total.quantile(quantile)


def evaluate_rule(rule: AlertRule, reader: WindowReader, skip: Skip | None = None) -> list[Sample]:
    """The rule's value per group at the reader's current time (groups without data left out).

    ``skip`` is asked before each group's value is computed (not for rates, whose
    value moves with time alone).
    """
    resolution = reader.resolution
    group_by = tuple(rule.group_by)
    _, _, covered = bucket_range(rule.evaluation_window, reader.now, resolution)
    span = max(covered, min(rule.evaluation_window, float(resolution)))
    samples = []
    if rule.aggregation in (Aggregation.RATE_PER_SECOND, Aggregation.RATE_PER_MINUTE):
        skip = None
    if rule.aggregation is Aggregation.RATIO:
        assert rule.denominator is not None
        numerators = reader.groups(
            rule.metric_name, rule.matchers, group_by, rule.evaluation_window, False
        )
        denominators = reader.groups(
            rule.denominator_metric,
            rule.denominator.matchers,
            group_by,
            rule.evaluation_window,
            False,
        )
        by_sum = rule.ratio_of == "sum"
        for group, below in denominators.items():
            above = numerators.get(group)
            token: tuple[object, ...] = (above, below)
            if skip is not None and skip(group, token):
                continue
            top = 0.0 if above is None else (above.sum if by_sum else float(above.count))
            bottom = below.sum if by_sum else float(below.count)
            value = top / bottom if bottom else None
            samples.append(Sample(_labels(group_by, group), value, below.count, group, token))
        return samples
    with_sketch = rule.aggregation.quantile is not None
    groups = reader.groups(
        rule.metric_name, rule.matchers, group_by, rule.evaluation_window, with_sketch
    )
    for group, total in groups.items():
        token = (total,)
        if skip is not None and skip(group, token):
            continue
        value = value_of(rule.aggregation, total, span)
        samples.append(Sample(_labels(group_by, group), value, total.count, group, token))
    return samples


def _labels(group_by: tuple[str, ...], group: GroupKey) -> dict[str, str]:
    return dict(zip(group_by, group, strict=True))


def evaluate_rules(
    rules: Iterable[AlertRule], source: BucketSource, now: float
) -> dict[str, list[Sample]]:
    """Every rule's samples at ``now`` (for the CLI; the engine keeps one reader)."""
    reader = WindowReader()
    reader.begin(source, now)
    return {rule.id: evaluate_rule(rule, reader) for rule in rules}
