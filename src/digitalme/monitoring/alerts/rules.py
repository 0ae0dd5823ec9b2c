"""Alert rules: the plan's ``AlertRule`` plus aggregation, filters, grouping and hysteresis.

A rule compares one number per group, computed over the live aggregates of the
last ``evaluation_window``, with ``threshold`` (see :mod:`.evaluation` for what
each aggregation computes and how the window maps onto 10 s buckets). Rules are
validated when they are loaded (rule files, the settings' defaults, the admin
API): every error names its field and reason, and a rule that validates can
always be evaluated and rendered.
"""

from __future__ import annotations

import math
import operator as op
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from digitalme.monitoring.alerts.errors import FieldProblem, RuleValidationError
from digitalme.monitoring.alerts.matchers import Matcher, parse_matchers
from digitalme.monitoring.alerts.model import MANUAL_RULE_ID, SECURITY_RULE_ID, AlertCategory
from digitalme.monitoring.alerts.templates import Number, RuleView, check_template, render
from digitalme.monitoring.durations import format_duration, parse_duration
from digitalme.monitoring.telemetry.items import Severity

__all__ = [
    "RULE_ID_PATTERN",
    "Aggregation",
    "AlertRule",
    "NoDataMode",
    "Operator",
    "SeriesSelector",
    "describe_validation_error",
    "validate_rule",
]

RULE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
LABEL_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$"
CHANNEL_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,49}$"
RESERVED_IDS = frozenset({MANUAL_RULE_ID, SECURITY_RULE_ID})
RESERVED_LABELS = frozenset({"alertname", "severity", "category"})
MAX_WINDOW_CONTEXT = "max_window"
"""Validation context key: the longest evaluation window allowed (the live window)."""


def _duration(value: object) -> float:
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration)]


class Operator(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="

    @property
    def compare(self) -> Callable[[float, float], bool]:
        return _COMPARE[self]

    @property
    def ordering(self) -> bool:
        """True for >, >=, <, <= (the operators hysteresis makes sense for)."""
        return self not in (Operator.EQ, Operator.NE)


_COMPARE: dict[Operator, Callable[[float, float], bool]] = {
    Operator.GT: op.gt,
    Operator.GE: op.ge,
    Operator.LT: op.lt,
    Operator.LE: op.le,
    Operator.EQ: op.eq,
    Operator.NE: op.ne,
}
# The plan's ComparisonOperator names, accepted as aliases.
_OPERATOR_ALIASES = {
    "greaterthan": ">",
    "gt": ">",
    "greaterthanorequal": ">=",
    "ge": ">=",
    "gte": ">=",
    "lessthan": "<",
    "lt": "<",
    "lessthanorequal": "<=",
    "le": "<=",
    "lte": "<=",
    "equals": "==",
    "eq": "==",
    "=": "==",
    "notequals": "!=",
    "ne": "!=",
}


class Aggregation(StrEnum):
    """What a rule computes over its window (per group)."""

    AVG = "avg"
    SUM = "sum"
    COUNT = "count"
    RATE_PER_SECOND = "rate_per_second"  # recorded values per second
    RATE_PER_MINUTE = "rate_per_minute"
    MIN = "min"
    MAX = "max"
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"
    RATIO = "ratio"  # numerator / denominator (counts, or sums with ratio_of: sum)

    @property
    def quantile(self) -> float | None:
        return int(self.value[1:]) / 100 if self.value[0] == "p" else None


class NoDataMode(StrEnum):
    """What a window without data (or with fewer than min_data_points values) means."""

    OK = "ok"  # the condition does not hold: pending is dropped, firing resolves
    ALERTING = "alerting"  # the condition holds
    KEEP_STATE = "keep_state"  # nothing changes


def _case_insensitive(enum: type[StrEnum]) -> Callable[[object], object]:
    def convert(value: object) -> object:
        if isinstance(value, str):
            for member in enum:
                if member.value.lower() == value.strip().lower():
                    return member
        return value

    return convert


def _operator(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        return _OPERATOR_ALIASES.get(text.lower().replace("_", ""), text)
    return value


class SeriesSelector(BaseModel):
    """The series of a ratio's denominator: a metric (the rule's own when left out) and filters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str | None = Field(default=None, min_length=1, max_length=200)
    filters: dict[str, str] = Field(default_factory=dict)

    _matchers: tuple[Matcher, ...] = PrivateAttr(default=())

    @field_validator("filters")
    @classmethod
    def _valid_matchers(cls, value: dict[str, str]) -> dict[str, str]:
        parse_matchers(value)
        return value

    def model_post_init(self, _context: Any) -> None:
        self._matchers = parse_matchers(self.filters)

    @property
    def matchers(self) -> tuple[Matcher, ...]:
        return self._matchers


class AlertRule(BaseModel):
    """One alert rule. Durations are seconds (``"5m"``, ``"30s"``, ``"PT5M"`` are accepted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=RULE_ID_PATTERN, description="unique; letters, digits, . _ -")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    metric_name: str = Field(min_length=1, max_length=200)
    filters: dict[str, str] = Field(
        default_factory=dict, description="label matchers: {label: '=~5..'}"
    )
    aggregation: Annotated[Aggregation, BeforeValidator(_case_insensitive(Aggregation))] = (
        Aggregation.AVG
    )
    denominator: SeriesSelector | None = None
    ratio_of: Literal["count", "sum"] = "count"
    operator: Annotated[Operator, BeforeValidator(_operator)]
    threshold: float = Field(allow_inf_nan=False)
    clear_threshold: float | None = Field(default=None, allow_inf_nan=False)
    evaluation_window: Duration = 300.0
    min_data_points: int = Field(default=1, ge=1, le=10_000_000)
    min_duration: Duration = 0.0
    keep_firing_for: Duration = 0.0
    no_data: Annotated[NoDataMode, BeforeValidator(_case_insensitive(NoDataMode))] = NoDataMode.OK
    group_by: list[str] = Field(default_factory=list, max_length=10)
    severity: Annotated[Severity, BeforeValidator(_case_insensitive(Severity))] = Severity.MEDIUM
    category: Annotated[AlertCategory, BeforeValidator(_case_insensitive(AlertCategory))] = (
        AlertCategory.PERFORMANCE
    )
    title_template: str = "{rule.name}"
    description_template: str = (
        "{rule.name}: {aggregation} of {metric} is {value} ({operator} {threshold})"
    )
    repeat_interval: Duration | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    notification_channels: list[str] | None = Field(default=None, max_length=20)
    enabled: bool = True

    _matchers: tuple[Matcher, ...] = PrivateAttr(default=())
    _view: RuleView | None = PrivateAttr(default=None)

    # -- validation ------------------------------------------------------------

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_IDS:
            raise ValueError(f"{value!r} is reserved for alerts the engine raises itself")
        return value

    @field_validator("filters")
    @classmethod
    def _valid_matchers(cls, value: dict[str, str]) -> dict[str, str]:
        parse_matchers(value)
        return value

    @field_validator("evaluation_window")
    @classmethod
    def _window_fits(cls, value: float, info: ValidationInfo) -> float:
        if value <= 0:
            raise ValueError("must be longer than 0 seconds")
        limit = (info.context or {}).get(MAX_WINDOW_CONTEXT)
        if limit is not None and value > limit:
            raise ValueError(
                f"{format_duration(value)} is longer than the live window "
                f"({format_duration(limit)}, telemetry.live_window_seconds)"
            )
        return value

    @field_validator("repeat_interval")
    @classmethod
    def _repeat_positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be longer than 0 seconds (or null: never repeat)")
        return value

    @field_validator("group_by")
    @classmethod
    def _group_labels(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("names a label twice")
        for label in value:
            if not label or len(label) > 100:
                raise ValueError(f"{label!r} is not a label name")
        return value

    @field_validator("labels")
    @classmethod
    def _static_labels(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        if len(value) > 20:
            raise ValueError("at most 20 labels")
        for name, text in value.items():
            if not re.fullmatch(LABEL_PATTERN, name):
                raise ValueError(f"{name!r} is not a label name (letters, digits, _ and .)")
            if name in RESERVED_LABELS:
                raise ValueError(f"{name!r} is set by the engine")
            if len(text) > 500:
                raise ValueError(f"{name}: value longer than 500 characters")
        return value

    @field_validator("notification_channels")
    @classmethod
    def _channel_names(cls, value: list[str] | None) -> list[str] | None:
        import re

        if value is None:
            return None
        for name in value:
            if not re.fullmatch(CHANNEL_PATTERN, name):
                raise ValueError(f"{name!r} is not a channel name (lowercase, like 'slack')")
        if len(set(value)) != len(value):
            raise ValueError("names a channel twice")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.aggregation is Aggregation.RATIO and self.denominator is None:
            raise ValueError("denominator: required when aggregation is ratio")
        if self.aggregation is not Aggregation.RATIO and self.denominator is not None:
            raise ValueError("denominator: only used when aggregation is ratio")
        if self.clear_threshold is not None:
            if not self.operator.ordering:
                raise ValueError(
                    "clear_threshold: only for the operators >, >=, <, <= (not == or !=)"
                )
            if (
                self.operator in (Operator.GT, Operator.GE)
                and self.clear_threshold > self.threshold
            ):
                raise ValueError(
                    "clear_threshold: must be at most threshold for > and >= "
                    "(the alert resolves once the value falls back below it)"
                )
            if (
                self.operator in (Operator.LT, Operator.LE)
                and self.clear_threshold < self.threshold
            ):
                raise ValueError(
                    "clear_threshold: must be at least threshold for < and <= "
                    "(the alert resolves once the value climbs back above it)"
                )
        for name in ("title_template", "description_template"):
            try:
                check_template(getattr(self, name), self.view)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return self

    def model_post_init(self, _context: Any) -> None:
        self._matchers = parse_matchers(self.filters)

    # -- use -------------------------------------------------------------------

    @property
    def matchers(self) -> tuple[Matcher, ...]:
        return self._matchers

    @property
    def denominator_metric(self) -> str:
        assert self.denominator is not None
        return self.denominator.metric or self.metric_name

    @property
    def view(self) -> RuleView:
        """What templates read of this rule."""
        if self._view is None:
            self._view = RuleView(
                id=self.id,
                name=self.name,
                description=self.description,
                metric_name=self.metric_name,
                aggregation=str(self.aggregation),
                operator=str(self.operator),
                severity=str(self.severity),
                category=str(self.category),
                threshold=Number(self.threshold),
            )
        return self._view

    def breaches(self, value: float) -> bool:
        """Whether ``value`` meets the rule's condition (fires it)."""
        return self.operator.compare(value, self.threshold)

    def still_firing(self, value: float) -> bool:
        """Whether a firing alert stays firing at ``value`` (the clear threshold, if any)."""
        bound = self.threshold if self.clear_threshold is None else self.clear_threshold
        return self.operator.compare(value, bound)

    def title(self, value: float | None, labels: Mapping[str, str], count: int = 1) -> str:
        return render(self.title_template, self.view, value, labels, count)

    def message(self, value: float | None, labels: Mapping[str, str], count: int = 1) -> str:
        return render(self.description_template, self.view, value, labels, count)

    def definition(self) -> dict[str, Any]:
        """The rule as JSON-ready data (what the store and the API keep)."""
        return self.model_dump(mode="json")


def describe_validation_error(exc: ValidationError, prefix: str = "") -> list[FieldProblem]:
    """Each pydantic error as ``field: reason`` (dotted field, no input value)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        location = [str(part) for part in error["loc"]]
        message = error["msg"].removeprefix("Value error, ")
        # Model-level checks name their field at the start of the message.
        head, separator, rest = message.partition(": ")
        if not location and separator and head.replace("_", "").isalnum():
            location, message = [head], rest
        field = ".".join(location)
        problems.append(FieldProblem(f"{prefix}{field}" if field else prefix.rstrip("."), message))
    return problems


def validate_rule(data: Mapping[str, Any], *, max_window: float | None = None) -> AlertRule:
    """A rule from plain data (file, settings, API); raises :class:`RuleValidationError`."""
    try:
        return AlertRule.model_validate(dict(data), context={MAX_WINDOW_CONTEXT: max_window})
    except ValidationError as exc:
        rule_id = data.get("id") if isinstance(data.get("id"), str) else None
        raise RuleValidationError(describe_validation_error(exc), rule_id=rule_id) from None


def finite(value: float | None) -> float | None:
    """``value`` unless it is NaN or infinite (which JSON cannot carry)."""
    return value if value is not None and math.isfinite(value) else None
