"""Alerting: rules, the detection engine, silences and the durable alert store.

Detection only: the engine writes alert events and one outbox delivery per
target channel; the notifiers' dispatcher sends them. See the README's
"Alert rules" section.
"""

from digitalme.monitoring.alerts.engine import ALERT_EVENT_TOPIC, AlertEngine, Route
from digitalme.monitoring.alerts.errors import (
    AlertError,
    AlertNotFound,
    AlertStoreUnavailable,
    FieldProblem,
    RuleFileError,
    RuleValidationError,
    SilenceNotFound,
)
from digitalme.monitoring.alerts.memory import InMemoryAlertStore
from digitalme.monitoring.alerts.model import (
    MANUAL_RULE_ID,
    SECURITY_RULE_ID,
    Alert,
    AlertCategory,
    AlertEvent,
    AlertEventKind,
    AlertState,
    Severity,
)
from digitalme.monitoring.alerts.rulefile import load_rule_file, load_rules
from digitalme.monitoring.alerts.rules import (
    Aggregation,
    AlertRule,
    NoDataMode,
    Operator,
    SeriesSelector,
    validate_rule,
)
from digitalme.monitoring.alerts.silences import Silence
from digitalme.monitoring.alerts.sql_store import SqlAlertStore
from digitalme.monitoring.alerts.store import (
    AlertChanges,
    AlertDetail,
    AlertQuery,
    AlertStore,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    NewDelivery,
    StoredRule,
)

__all__ = [
    "ALERT_EVENT_TOPIC",
    "MANUAL_RULE_ID",
    "SECURITY_RULE_ID",
    "Aggregation",
    "Alert",
    "AlertCategory",
    "AlertChanges",
    "AlertDetail",
    "AlertEngine",
    "AlertError",
    "AlertEvent",
    "AlertEventKind",
    "AlertNotFound",
    "AlertQuery",
    "AlertRule",
    "AlertState",
    "AlertStore",
    "AlertStoreUnavailable",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryStatus",
    "FieldProblem",
    "InMemoryAlertStore",
    "NewDelivery",
    "NoDataMode",
    "Operator",
    "Route",
    "RuleFileError",
    "RuleValidationError",
    "SeriesSelector",
    "Severity",
    "Silence",
    "SilenceNotFound",
    "SqlAlertStore",
    "StoredRule",
    "load_rule_file",
    "load_rules",
    "validate_rule",
]
