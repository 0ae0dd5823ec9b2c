"""Title and description templates: ``str.format`` fields checked when the rule is loaded.

A template may use ``{value}``, ``{threshold}``, ``{labels[route]}``,
``{rule.name}`` (also ``rule.id``, ``rule.description``, ``rule.metric_name``,
``rule.aggregation``, ``rule.operator``, ``rule.severity``, ``rule.category``),
``{metric}``, ``{aggregation}``, ``{operator}`` and ``{count}``, with format
specs (``{value:.1f}``, ``{value:.1%}``). Numbers without a spec print with six
significant digits; a missing value (no data) prints ``no data``; a label the
alert lacks prints as empty. Anything else (an unknown name, attribute access
beyond the list, a bad format spec) is refused when the rule is validated, so
rendering never fails at runtime.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FIELDS", "Number", "RuleView", "check_template", "render"]

FIELDS = ("value", "threshold", "labels", "rule", "metric", "aggregation", "operator", "count")
RULE_ATTRIBUTES = (
    "id",
    "name",
    "description",
    "metric_name",
    "aggregation",
    "operator",
    "severity",
    "category",
    "threshold",
)
MAX_TEMPLATE_LENGTH = 2000


class Number(float):
    """A float that formats as ``6g`` without a spec, and as ``no data`` when missing (NaN)."""

    def __format__(self, spec: str) -> str:
        if math.isnan(self):
            return "no data"
        return format(float(self), spec or ".6g")

    def __str__(self) -> str:
        return format(self, "")


class _Labels(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class RuleView:
    """What a template may read of its rule."""

    id: str
    name: str
    description: str
    metric_name: str
    aggregation: str
    operator: str
    severity: str
    category: str
    threshold: Number


def _context(
    rule: RuleView, value: float | None, labels: Mapping[str, str], count: int
) -> dict[str, Any]:
    return {
        "value": Number(math.nan if value is None else value),
        "threshold": rule.threshold,
        "labels": _Labels(labels),
        "rule": rule,
        "metric": rule.metric_name,
        "aggregation": rule.aggregation,
        "operator": rule.operator,
        "count": count,
    }


def check_template(template: str, rule: RuleView) -> None:
    """Raise ValueError (with the reason) unless ``template`` always renders."""
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise ValueError(f"longer than {MAX_TEMPLATE_LENGTH} characters")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"not a valid template ({exc}); write literal braces as {{{{ }}}}"
        ) from None
    for _literal, name, spec, _conversion in parsed:
        if name is None:
            continue
        _check_field(name)
        if spec and "{" in spec:
            raise ValueError(f"nested fields in a format spec are not supported: {{{name}:{spec}}}")
    for value in (1.5, None):
        try:
            template.format_map(_context(rule, value, {}, 1))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(f"cannot be rendered: {type(exc).__name__}: {exc}") from None


def _check_field(name: str) -> None:
    allowed = ", ".join("{" + f + "}" for f in FIELDS)
    root, _, rest = name.partition(".")
    root, bracket, _ = root.partition("[")
    if root not in FIELDS:
        shown = "{" + name + "}" if name else "{} (positional)"
        raise ValueError(f"unknown field {shown}; use {allowed}")
    if bracket and root != "labels":
        raise ValueError(f"{{{name}}}: only labels can be indexed, as in {{labels[route]}}")
    if root == "labels" and (rest or not bracket):
        if not bracket:
            raise ValueError("{labels} needs a label name, as in {labels[route]}")
        raise ValueError(f"{{{name}}}: write a label as {{labels[route]}}")
    if root == "rule":
        if not rest or "." in rest or "[" in rest or rest not in RULE_ATTRIBUTES:
            raise ValueError(
                f"{{{name}}}: use one of " + ", ".join("{rule." + a + "}" for a in RULE_ATTRIBUTES)
            )
    elif rest:
        raise ValueError(f"{{{name}}}: {{{root}}} has no attributes")


def render(
    template: str, rule: RuleView, value: float | None, labels: Mapping[str, str], count: int = 1
) -> str:
    """The rendered text; a template that fails anyway (it was checked) is returned as is."""
    try:
        return template.format_map(_context(rule, value, labels, count))
    except Exception:
        return template
