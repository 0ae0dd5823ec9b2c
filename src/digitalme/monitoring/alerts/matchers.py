"""Label matchers, Prometheus-style, written as a mapping from label to ``<op><value>``.

``{"status_code": "=~5..", "route": "!=GET /health", "method": "POST"}``:

* ``"value"`` or ``"=value"``: equal;
* ``"!=value"``: not equal;
* ``"=~regex"``: the whole value matches the regex (anchored, as in Prometheus);
* ``"!~regex"``: the whole value does not match.

A label a series (or an alert) does not have counts as the empty string, so
``{"route": "!=x"}`` keeps series without a route. The same syntax serves rule
filters, the ratio's denominator and silences. To match a value that itself
starts with ``=`` or ``!``, write it with an explicit ``=`` (``"==x"``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["MatchOp", "Matcher", "matches_all", "parse_matchers"]

MAX_MATCHERS = 20
MAX_PATTERN_LENGTH = 500


class MatchOp(StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    """One condition on one label."""

    label: str
    op: MatchOp
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op is MatchOp.EQ:
            return actual == self.value
        if self.op is MatchOp.NE:
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op is MatchOp.RE else not found

    def text(self) -> str:
        """The matcher back in the mapping syntax (its value)."""
        return f"{self.op}{self.value}"


def parse_matcher(label: str, spec: str) -> Matcher:
    """One matcher; raises ValueError saying what is wrong."""
    if not isinstance(label, str) or not label:
        raise ValueError("label names must be non-empty strings")
    if not isinstance(spec, str):
        raise ValueError(f"{label}: must be a string like '=~5..' or 'value'")
    for op in (MatchOp.RE, MatchOp.NRE, MatchOp.NE, MatchOp.EQ):
        if spec.startswith(op.value):
            value = spec[len(op.value) :]
            break
    else:
        op, value = MatchOp.EQ, spec
    pattern = None
    if op in (MatchOp.RE, MatchOp.NRE):
        if len(value) > MAX_PATTERN_LENGTH:
            raise ValueError(f"regex longer than {MAX_PATTERN_LENGTH} characters")
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex {value!r}: {exc}") from None
    return Matcher(label, op, value, pattern)


def parse_matchers(spec: Mapping[str, str] | None) -> tuple[Matcher, ...]:
    """Every matcher of a mapping; raises ValueError naming the label at fault."""
    if not spec:
        return ()
    if len(spec) > MAX_MATCHERS:
        raise ValueError(f"at most {MAX_MATCHERS} matchers")
    found = []
    for label, value in spec.items():
        try:
            found.append(parse_matcher(label, value))
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
    return tuple(found)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(matcher.matches(labels) for matcher in matchers)
