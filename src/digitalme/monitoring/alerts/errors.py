"""Typed errors of the alerting layer; meaning lives in fields, never in message text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from digitalme.monitoring.errors import MonitoringError

__all__ = [
    "AlertError",
    "AlertNotFound",
    "AlertStoreUnavailable",
    "FieldProblem",
    "RuleConflict",
    "RuleFileError",
    "RuleNotFound",
    "RuleValidationError",
    "SilenceNotFound",
]


class AlertError(MonitoringError):
    """Root of the alerting errors."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One reason a rule (or silence) is invalid: ``field`` is a dotted path (``filters.route``)."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


class RuleValidationError(AlertError):
    """A rule definition is invalid; ``problems`` name each field and why (the API's 422)."""

    def __init__(self, problems: Sequence[FieldProblem], *, rule_id: str | None = None) -> None:
        self.problems = tuple(problems)
        self.rule_id = rule_id
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid rule")


class RuleFileError(AlertError):
    """A rule file cannot be used; ``str()`` is one line naming the file, the rule and the field.

    ``index`` is the rule's position in the file's ``rules`` list (None for a
    problem with the file itself), ``rule_id`` its id when it has a readable one.
    """

    def __init__(
        self,
        file: str,
        reason: str,
        *,
        index: int | None = None,
        rule_id: str | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.reason = reason
        self.index = index
        self.rule_id = rule_id
        self.field = field
        where = file
        if index is not None:
            where += f": rules[{index}]"
            if rule_id:
                where += f" (id {rule_id!r})"
        if field:
            where += f": {field}"
        super().__init__(f"{where}: {reason}")


class AlertNotFound(AlertError):
    """No alert has this id."""

    def __init__(self, alert_id: str) -> None:
        self.alert_id = alert_id
        super().__init__(f"no alert {alert_id!r}")


class RuleNotFound(AlertError):
    """No rule has this id."""

    def __init__(self, rule_id: str) -> None:
        self.rule_id = rule_id
        super().__init__(f"no rule {rule_id!r}")


class RuleConflict(AlertError):
    """A rule change that cannot be made as asked (``reason`` says why, for the API's 409)."""

    def __init__(self, rule_id: str, reason: str) -> None:
        self.rule_id = rule_id
        self.reason = reason
        super().__init__(f"rule {rule_id!r}: {reason}")


class SilenceNotFound(AlertError):
    """No silence has this id."""

    def __init__(self, silence_id: str) -> None:
        self.silence_id = silence_id
        super().__init__(f"no silence {silence_id!r}")


class AlertStoreUnavailable(AlertError):
    """The alert store could not be read or written; what was to be written is kept
    in memory and written once it answers again (``cause_type`` names the error)."""

    def __init__(self, cause: BaseException) -> None:
        self.cause_type = type(cause).__name__
        super().__init__(f"alert store unavailable ({self.cause_type})")


class LeaderUnavailable(AlertError):
    """An admin change made on an instance that does not lead was not applied by the
    leader within ``cluster.command_timeout`` seconds (no leader, or a slow one)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(
            f"no alert leader applied the change within {timeout:g} s; try again shortly"
        )
