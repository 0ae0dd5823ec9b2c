"""Rule files: YAML with a ``rules`` list, named in ``alerting.rule_files``.

.. code-block:: yaml

    rules:
      - id: checkout_latency
        name: Slow checkout
        metric_name: http.server.duration
        filters: {route: "POST /api/checkout"}
        aggregation: p99
        operator: ">"
        threshold: 1500
        evaluation_window: 5m

A file that cannot be used raises :class:`RuleFileError` whose message is one
line naming the file, the rule (index and id) and the field: start-up stops
with it, and ``digitalme alerts check`` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from digitalme.monitoring.alerts.defaults import default_rules
from digitalme.monitoring.alerts.errors import RuleFileError, RuleValidationError
from digitalme.monitoring.alerts.rules import AlertRule, validate_rule
from digitalme.settings import Settings

__all__ = ["MAX_RULES", "check_unique", "load_rule_file", "load_rules", "parse_rule_file"]

MAX_RULES = 1000
MAX_FILE_BYTES = 4 * 1024 * 1024


def load_rule_file(path: Path, *, max_window: float | None = None) -> list[AlertRule]:
    """Every rule of one file, validated; raises :class:`RuleFileError`."""
    name = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise RuleFileError(name, f"larger than {MAX_FILE_BYTES // 1024 // 1024} MiB")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(
            name, f"cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    except UnicodeDecodeError:
        raise RuleFileError(name, "is not UTF-8 text") from None
    return parse_rule_file(text, name, max_window=max_window)


def parse_rule_file(text: str, name: str, *, max_window: float | None = None) -> list[AlertRule]:
    """The rules of a rule file's text (``name`` is used in messages)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise RuleFileError(name, f"invalid YAML{where}: {problem}") from None
    if document is None:
        return []
    if not isinstance(document, dict) or set(document) - {"rules"}:
        raise RuleFileError(name, "must be a mapping with one key, 'rules', holding a list")
    entries = document.get("rules") or []
    if not isinstance(entries, list):
        raise RuleFileError(name, "'rules' must be a list", field="rules")
    if len(entries) > MAX_RULES:
        raise RuleFileError(name, f"more than {MAX_RULES} rules")
    rules = []
    for index, entry in enumerate(entries):
        rule_id = _id_of(entry)
        if not isinstance(entry, dict):
            raise RuleFileError(name, "must be a mapping of rule fields", index=index)
        try:
            rules.append(validate_rule(entry, max_window=max_window))
        except RuleValidationError as exc:
            problem = exc.problems[0]
            more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
            raise RuleFileError(
                name, problem.reason + more, index=index, rule_id=rule_id, field=problem.field
            ) from None
    check_unique(rules, name)
    return rules


def _id_of(entry: Any) -> str | None:
    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
        return str(entry["id"])[:100]
    return None


def check_unique(rules: Iterable[AlertRule], name: str) -> None:
    """Raise :class:`RuleFileError` when two rules share an id."""
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.id in seen:
            raise RuleFileError(
                name, "another rule already has this id", index=index, rule_id=rule.id, field="id"
            )
        seen.add(rule.id)


def load_rules(settings: Settings, extra_files: Sequence[Path] = ()) -> list[AlertRule]:
    """The shipped defaults (with their overrides) and every rule file, ids unique across all."""
    max_window = float(settings.telemetry.live_window_seconds)
    rules = default_rules(settings)
    owner = {rule.id: "the default rules (alerting.defaults)" for rule in rules}
    for path in [*settings.alerting.rule_files, *extra_files]:
        for index, rule in enumerate(load_rule_file(path, max_window=max_window)):
            if rule.id in owner:
                raise RuleFileError(
                    str(path),
                    f"the id is already used by {owner[rule.id]}; choose another "
                    "(a default rule is disabled with alerting.defaults.<id>.enabled: false)",
                    index=index,
                    rule_id=rule.id,
                    field="id",
                )
            owner[rule.id] = str(path)
            rules.append(rule)
    return rules
