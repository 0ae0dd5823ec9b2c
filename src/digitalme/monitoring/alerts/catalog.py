"""The rule catalog: shipped defaults and rule files, merged with the rules saved through the API.

Rules from the defaults and files (``base``) are fixed for the life of the
process. Rules created or changed through the admin API are kept in the alert
store (``telemetry_alert_rules``), loaded at start and applied to the engine
(:meth:`~.engine.AlertEngine.set_rules`) at once when they change (with several
instances the leader is told to read them again: :meth:`~.engine.AlertEngine.
config_changed`; the others read them every second). A rule
saved through the API with the id of a default or file rule *overrides* it
(the plan's ConfigureAlertRuleAsync: change a threshold, switch it off);
deleting that override brings the base rule back. A base rule cannot be
deleted through the API (disable it instead: ``enabled: false``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from digitalme.monitoring.alerts.defaults import is_default
from digitalme.monitoring.alerts.engine import AlertEngine
from digitalme.monitoring.alerts.errors import (
    FieldProblem,
    RuleConflict,
    RuleNotFound,
    RuleValidationError,
)
from digitalme.monitoring.alerts.rules import AlertRule, validate_rule
from digitalme.monitoring.alerts.store import StoredRule
from digitalme.monitoring.clock import Clock

__all__ = ["MAX_API_RULES", "RuleCatalog"]

log = structlog.get_logger("digitalme.monitoring.alerts")

MAX_API_RULES = 1000


class RuleCatalog:
    """The rules the engine evaluates, and where each one comes from."""

    def __init__(
        self,
        base: Sequence[AlertRule],
        engine: AlertEngine,
        clock: Clock,
        *,
        max_window: float | None = None,
    ) -> None:
        self._base = {rule.id: rule for rule in base}
        self._engine = engine
        self._clock = clock
        self._max_window = max_window
        self._saved: dict[str, tuple[AlertRule, StoredRule]] = {}
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Read the API's rules from the store and apply them (an unusable one is skipped)."""
        saved: dict[str, tuple[AlertRule, StoredRule]] = {}
        for stored in await self._engine.store.list_rules():
            try:
                rule = validate_rule(stored.definition, max_window=self._max_window)
            except RuleValidationError as exc:
                log.warning("stored_alert_rule_skipped", rule=stored.id, reason=str(exc))
                continue
            saved[rule.id] = (rule, stored)
        self._saved = saved
        self._apply()

    def _apply(self) -> None:
        self._engine.set_rules(self.rules())

    def rules(self) -> list[AlertRule]:
        """The effective rules: base ones (or their override), then API-only ones by id."""
        found = [self._saved[rid][0] if rid in self._saved else r for rid, r in self._base.items()]
        found += [rule for rid, (rule, _) in sorted(self._saved.items()) if rid not in self._base]
        return found

    def get(self, rule_id: str) -> AlertRule:
        if rule_id in self._saved:
            return self._saved[rule_id][0]
        if rule_id in self._base:
            return self._base[rule_id]
        raise RuleNotFound(rule_id)

    def describe(self, rule: AlertRule) -> dict[str, Any]:
        """The rule as the API shows it: its definition, ``source`` and who changed it last."""
        base = "default" if is_default(rule.id) else "file"
        saved = self._saved.get(rule.id)
        body = rule.definition()
        body["source"] = "api" if saved is not None else base
        body["overrides"] = base if saved is not None and rule.id in self._base else None
        body["updated_at"] = None if saved is None else saved[1].updated_at.isoformat()
        body["updated_by"] = None if saved is None else saved[1].updated_by
        return body

    def _validate(self, data: Mapping[str, Any]) -> AlertRule:
        return validate_rule(data, max_window=self._max_window)

    async def _save(self, rule: AlertRule, by: str | None) -> None:
        stored = StoredRule(
            id=rule.id,
            definition=rule.definition(),
            enabled=rule.enabled,
            updated_at=self._clock.now(),
            updated_by=by,
        )
        await self._engine.store.save_rule(stored)
        self._saved[rule.id] = (rule, stored)
        self._apply()

    async def create(self, data: Mapping[str, Any], by: str | None) -> AlertRule:
        """A new rule; :class:`RuleConflict` when the id is taken."""
        rule = self._validate(data)
        async with self._lock:
            if rule.id in self._saved or rule.id in self._base:
                raise RuleConflict(rule.id, "a rule with this id exists; change it with PUT")
            if len(self._saved) >= MAX_API_RULES:
                raise RuleConflict(
                    rule.id, f"more than {MAX_API_RULES} rules saved through the API"
                )
            await self._save(rule, by)
        await self._engine.config_changed()
        return rule

    async def replace(self, rule_id: str, data: Mapping[str, Any], by: str | None) -> AlertRule:
        """Change (or override) rule ``rule_id``; :class:`RuleNotFound` when there is none."""
        body = dict(data)
        if body.setdefault("id", rule_id) != rule_id:
            raise RuleValidationError(
                [FieldProblem("id", "must be the id in the path (rules are not renamed)")],
                rule_id=rule_id,
            )
        rule = self._validate(body)
        async with self._lock:
            if rule_id not in self._saved and rule_id not in self._base:
                raise RuleNotFound(rule_id)
            await self._save(rule, by)
        await self._engine.config_changed()
        return rule

    async def delete(self, rule_id: str) -> AlertRule | None:
        """Delete an API rule; returns the base rule it overrode, now back in force."""
        async with self._lock:
            if rule_id not in self._saved:
                if rule_id in self._base:
                    raise RuleConflict(
                        rule_id,
                        "a default or rule-file rule cannot be deleted; "
                        "disable it with PUT and enabled: false",
                    )
                raise RuleNotFound(rule_id)
            await self._engine.store.delete_rule(rule_id)
            del self._saved[rule_id]
            self._apply()
        await self._engine.config_changed()
        return self._base.get(rule_id)
