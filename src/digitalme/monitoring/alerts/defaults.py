"""The default rules shipped and enabled, each tunable or disabled under ``alerting.defaults``.

* ``http_latency_p95``: p95 of ``http.server.duration`` per route > 2000 ms over
  5 min; Performance, High.
* ``http_error_ratio``: requests answered 5xx / all requests > 5 % over 5 min,
  at least 20 requests; Error, High.
* ``rate_limit_spike``: ``RateLimit`` security events (``Security.Events``)
  > 30 per minute over 1 min; Security, Medium.
* ``personality_generation_slow``: p95 of ``Personality.Generation.Duration``
  > 10 s over 5 min; Performance, Medium.
* ``telemetry_dropped``: ``telemetry.dropped`` sum > 0 over 5 min, per reason;
  Error, Medium.
* ``health_check_unhealthy``: ``System.Health.Check.Available`` max < 0.5 per
  check over the last 3 probes, at least 3 probes; Availability, Critical.

The health rule fires when a check was Unhealthy (score 0) on every probe of
its window, i.e. 3 consecutive failed probes at ``health.probe_interval``, and
resolves on the first passing probe; Degraded checks (score 0.5, such as a
missing Claude API key) do not fire it unless its threshold is raised to 1. It
keeps its state while the window holds fewer than 3 probes (``no_data:
keep_state``), so the bucket boundaries cannot make it flap. Critical because
an Unhealthy check means a dependency the service cannot work without (the
database) is down: it pages by SMS under the default routing.
"""

from __future__ import annotations

from typing import Any

from digitalme.monitoring.alerts.errors import RuleFileError, RuleValidationError
from digitalme.monitoring.alerts.rules import AlertRule, validate_rule
from digitalme.monitoring.uptime.model import BURN_RATE_METRIC
from digitalme.settings import Settings, SloSettings

__all__ = [
    "DEFAULT_RULE_IDS",
    "SLO_RULE_PREFIX",
    "burn_rate_rules",
    "default_definitions",
    "default_rules",
    "is_default",
]

SLO_RULE_PREFIX = "slo_burn_"

HEALTH_PROBES = 3
"""Consecutive failed probes before ``health_check_unhealthy`` fires."""


def default_definitions(settings: Settings) -> list[dict[str, Any]]:
    """The shipped rules as plain data, before the settings' overrides: the six above and
    one burn-rate rule per SLO tier (:func:`burn_rate_rules`) while uptime is on."""
    probe = settings.health.probe_interval
    live = float(settings.telemetry.live_window_seconds)
    health_window = min(HEALTH_PROBES * probe, live)
    health_points = max(1, min(HEALTH_PROBES, int(health_window // probe)))
    uptime = settings.uptime
    slo_rules = (
        burn_rate_rules(uptime.slo) if uptime.enabled and uptime.slo.burn_rate_alerts else []
    )
    return [
        {
            "id": "http_latency_p95",
            "name": "High request latency (p95)",
            "description": "The 95th percentile of request durations on a route is over 2 s.",
            "metric_name": "http.server.duration",
            "aggregation": "p95",
            "operator": ">",
            "threshold": 2000.0,
            "evaluation_window": 300.0,
            "group_by": ["route"],
            "severity": "High",
            "category": "Performance",
            "title_template": "Slow responses on {labels[route]}",
            "description_template": (
                "p95 request latency on {labels[route]} is {value:.0f} ms "
                "(threshold {threshold:.0f} ms)"
            ),
        },
        {
            "id": "http_error_ratio",
            "name": "High 5xx error ratio",
            "description": "More than 5 % of requests are answered with a 5xx status.",
            "metric_name": "http.server.duration",
            "filters": {"status_code": "=~5.."},
            "aggregation": "ratio",
            "denominator": {},
            "operator": ">",
            "threshold": 0.05,
            "evaluation_window": 300.0,
            "min_data_points": 20,
            "severity": "High",
            "category": "Error",
            "title_template": "High 5xx error ratio",
            "description_template": (
                "{value:.1%} of requests were answered with a 5xx status "
                "(threshold {threshold:.1%})"
            ),
        },
        {
            "id": "rate_limit_spike",
            "name": "Rate-limit violations spike",
            "description": "Clients are being refused by the rate limiter unusually often.",
            "metric_name": "Security.Events",
            "filters": {"EventType": "RateLimit"},
            "aggregation": "rate_per_minute",
            "operator": ">",
            "threshold": 30.0,
            "evaluation_window": 60.0,
            "severity": "Medium",
            "category": "Security",
            "title_template": "Rate-limit violations spike",
            "description_template": (
                "{value:.0f} rate-limit violations per minute (threshold {threshold:.0f})"
            ),
        },
        {
            "id": "personality_generation_slow",
            "name": "Slow personality generation",
            "description": "The 95th percentile of personality generations takes over 10 s.",
            "metric_name": "Personality.Generation.Duration",
            "aggregation": "p95",
            "operator": ">",
            "threshold": 10_000.0,
            "evaluation_window": 300.0,
            "severity": "Medium",
            "category": "Performance",
            "title_template": "Slow personality generation",
            "description_template": (
                "p95 personality generation time is {value:.0f} ms (threshold {threshold:.0f} ms)"
            ),
        },
        {
            "id": "telemetry_dropped",
            "name": "Telemetry items dropped",
            "description": "The telemetry pipeline dropped items (buffer full, sink backlog...).",
            "metric_name": "telemetry.dropped",
            "aggregation": "sum",
            "operator": ">",
            "threshold": 0.0,
            "evaluation_window": 300.0,
            "group_by": ["reason"],
            "severity": "Medium",
            "category": "Error",
            "title_template": "Telemetry items dropped ({labels[reason]})",
            "description_template": (
                "{value:.0f} telemetry items dropped in the window, reason {labels[reason]}"
            ),
        },
        {
            "id": "health_check_unhealthy",
            "name": "Health check unhealthy",
            "description": (f"A health check was Unhealthy on {health_points} consecutive probes."),
            "metric_name": "System.Health.Check.Available",
            "aggregation": "max",
            "operator": "<",
            "threshold": 0.5,
            "evaluation_window": health_window,
            "min_data_points": health_points,
            "no_data": "keep_state",
            "group_by": ["check"],
            "severity": "Critical",
            "category": "Availability",
            "title_template": "Health check {labels[check]} is unhealthy",
            "description_template": (
                "The {labels[check]} health check failed on every probe of the last "
                f"{health_points}"
            ),
        },
        *slo_rules,
    ]


def is_default(rule_id: str) -> bool:
    """Whether ``rule_id`` is one of the shipped rules (burn-rate ones included)."""
    return rule_id in DEFAULT_RULE_IDS or rule_id.startswith(SLO_RULE_PREFIX)


def burn_rate_rules(settings: SloSettings) -> list[dict[str, Any]]:
    """The SLO's burn-rate alert rules, ``slo_burn_<tier>`` (see :mod:`...uptime.slo`).

    Each fires when the tier's burn rate (the smaller of its long- and
    short-window rates, recorded by the SLO tracker) reaches the tier's factor.
    It reads the last two evaluations (``max`` over twice
    ``slo.evaluation_interval``, at least 20 s): it fires on the first
    evaluation that reaches the factor and resolves once two have not.
    """
    window = max(20.0, 2.0 * settings.evaluation_interval)
    return [
        {
            "id": f"{SLO_RULE_PREFIX}{tier.name}",
            "name": f"Error budget burn ({tier.name})",
            "description": (
                f"The error budget of the {settings.target:g} % availability SLO burns at "
                f"least {tier.factor:g}x the sustainable rate over {_span(tier.long_window)} "
                f"and {_span(tier.short_window)}."
            ),
            "metric_name": BURN_RATE_METRIC,
            "filters": {"tier": tier.name},
            "aggregation": "max",
            "operator": ">=",
            "threshold": tier.factor,
            "evaluation_window": window,
            "no_data": "keep_state",
            "severity": tier.severity,
            "category": "Availability",
            "title_template": f"Error budget burning ({tier.name})",
            "description_template": (
                "The error budget burns at {value:.1f}x the sustainable rate over both "
                f"{_span(tier.long_window)} and {_span(tier.short_window)} "
                "(threshold {threshold:g}x)"
            ),
        }
        for tier in settings.tiers
    ]


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


DEFAULT_RULE_IDS = (
    "http_latency_p95",
    "http_error_ratio",
    "rate_limit_spike",
    "personality_generation_slow",
    "telemetry_dropped",
    "health_check_unhealthy",
)


def default_rules(settings: Settings) -> list[AlertRule]:
    """The shipped rules with ``alerting.defaults`` applied (disabled ones included).

    Raises :class:`RuleFileError` naming ``alerting.defaults.<id>`` and the field.
    """
    overrides = settings.alerting.defaults
    definitions = default_definitions(settings)
    known = [definition["id"] for definition in definitions]
    for rule_id in overrides:
        if rule_id not in known:
            raise RuleFileError(
                f"alerting.defaults.{rule_id}",
                "no default rule has this id (they are: " + ", ".join(known) + ")",
            )
    rules = []
    for definition in definitions:
        override = overrides.get(definition["id"])
        if override is not None:
            definition.update(override.model_dump(exclude_unset=True))
        try:
            rules.append(
                validate_rule(definition, max_window=settings.telemetry.live_window_seconds)
            )
        except RuleValidationError as exc:
            problem = exc.problems[0]
            raise RuleFileError(
                f"alerting.defaults.{definition['id']}", problem.reason, field=problem.field
            ) from None
    return rules
