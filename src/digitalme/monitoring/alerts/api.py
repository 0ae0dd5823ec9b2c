"""The admin alert API (Admin and SuperAdmin only): alerts, history, rules and silences.

======  ==================================  ==========================================
GET     /api/alerts                         active alerts (filters: severity, category,
                                            state, rule_id, silenced)
GET     /api/alerts/history                 stored alerts, newest first (filters, since,
                                            until, limit)
GET     /api/alerts/{id}                    one alert with its events, deliveries, attempts
POST    /api/alerts                         raise an alert by hand (the plan's SendAlertAsync)
POST    /api/alerts/{id}/resolve            resolve it (resolved_by: the caller)
GET     /api/alerts/rules[/{id}]            the effective rules and their source
POST    /api/alerts/rules                   a new rule
PUT     /api/alerts/rules/{id}              change (or override) a rule
DELETE  /api/alerts/rules/{id}              delete a rule saved through the API
GET     /api/alerts/silences                every silence
POST    /api/alerts/silences                a new silence (created_by: the caller)
DELETE  /api/alerts/silences/{id}           remove a silence
======  ==================================  ==========================================

Errors use the host's shape: 401 without valid credentials, 403 for other
roles, 404 for an unknown id, 409 for a conflict (resolving a resolved alert,
a rule id already taken), 422 ``validation_error`` with a message naming the
field (``threshold: Field required``), 503 when the alert store cannot answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from digitalme.monitoring.access import AdminHandler, Caller, IdentifyCaller, error_response
from digitalme.monitoring.access import admin_route as shared_admin_route
from digitalme.monitoring.alerts.catalog import RuleCatalog
from digitalme.monitoring.alerts.engine import AlertEngine
from digitalme.monitoring.alerts.errors import (
    AlertError,
    AlertStoreUnavailable,
    FieldProblem,
    LeaderUnavailable,
    RuleConflict,
    RuleNotFound,
    RuleValidationError,
    SilenceNotFound,
)
from digitalme.monitoring.alerts.model import AlertCategory, AlertState
from digitalme.monitoring.alerts.rules import describe_validation_error
from digitalme.monitoring.alerts.silences import Silence
from digitalme.monitoring.alerts.store import MAX_HISTORY, AlertQuery
from digitalme.monitoring.telemetry.items import Severity

__all__ = [
    "AdminHandler",
    "ApiInput",
    "InvalidInput",
    "SeverityField",
    "admin_route",
    "alert_errors",
    "alert_routes",
    "parse_input",
    "parse_query",
    "read_json",
]

MAX_BODY_BYTES = 256 * 1024


class InvalidInput(Exception):
    """Bad input: answered 422 ``validation_error`` with ``message`` (which names the field)."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems) or "invalid input")


def alert_errors(request: Request, exc: Exception) -> Response | None:
    """The alert API's typed errors as the shared JSON errors (None: not one of them)."""
    if isinstance(exc, InvalidInput | RuleValidationError):
        return error_response(request, 422, "validation_error", str(exc))
    if isinstance(exc, RuleNotFound | SilenceNotFound):
        return error_response(request, 404, "not_found", str(exc))
    if isinstance(exc, RuleConflict):
        return error_response(request, 409, "conflict", exc.reason)
    if isinstance(exc, AlertStoreUnavailable):
        return error_response(request, 503, "service_unavailable", str(exc))
    if isinstance(exc, LeaderUnavailable):
        return error_response(request, 503, "leader_unavailable", str(exc))
    if isinstance(exc, AlertError):
        return error_response(request, 409, "conflict", str(exc))
    return None


def admin_route(
    path: str, methods: list[str], handler: AdminHandler, identify: IdentifyCaller, *, strict: bool
) -> Route:
    """A route for admins only; the alert errors become the shared JSON errors."""
    return shared_admin_route(
        path,
        methods,
        handler,
        identify,
        strict=strict,
        answer=alert_errors,
        component="alerting",
    )


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body (422 naming ``body`` otherwise)."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidInput([FieldProblem("body", f"larger than {MAX_BODY_BYTES // 1024} KiB")])
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput([FieldProblem("body", "not valid JSON")]) from None
    if not isinstance(data, dict):
        raise InvalidInput([FieldProblem("body", "must be a JSON object")])
    return data


def parse_input(model: type[BaseModel], data: Any, prefix: str = "") -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc, prefix)) from None


def _case_insensitive(enum: type[StrEnum]) -> Callable[[object], object]:
    def convert(value: object) -> object:
        if isinstance(value, str):
            for member in enum:
                if member.value.lower() == value.lower():
                    return member
        return value

    return convert


SeverityField = Annotated[Severity, BeforeValidator(_case_insensitive(Severity))]
CategoryField = Annotated[AlertCategory, BeforeValidator(_case_insensitive(AlertCategory))]
StateField = Annotated[AlertState, BeforeValidator(_case_insensitive(AlertState))]


class ApiInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActiveFilters(ApiInput):
    severity: SeverityField | None = None
    category: CategoryField | None = None
    state: StateField | None = None
    rule_id: str | None = Field(default=None, max_length=100)
    silenced: bool | None = None


class HistoryFilters(ApiInput):
    severity: SeverityField | None = None
    category: CategoryField | None = None
    state: StateField | None = None
    rule_id: str | None = Field(default=None, max_length=100)
    fingerprint: str | None = Field(default=None, max_length=64)
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    limit: int = Field(default=100, ge=1, le=MAX_HISTORY)


Scalar = str | int | float | bool | None


class ManualAlert(ApiInput):
    """``POST /api/alerts``: the plan's SendAlertAsync."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    severity: SeverityField
    category: CategoryField
    properties: dict[str, Scalar] = Field(default_factory=dict, max_length=50)
    affected_components: list[str] = Field(default_factory=list, max_length=20)
    labels: dict[str, str] = Field(default_factory=dict, max_length=20)


class SilenceInput(ApiInput):
    """``POST /api/alerts/silences``: starts now unless told; ``created_by`` is the caller."""

    matchers: dict[str, str]
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime
    comment: str = Field(default="", max_length=2000)


def parse_query(request: Request, model: type[BaseModel]) -> Any:
    """The query string as ``model`` (422 naming a parameter given twice or invalid)."""
    params = request.query_params
    repeated = [key for key in params if len(params.getlist(key)) > 1]
    if repeated:
        raise InvalidInput([FieldProblem(repeated[0], "given more than once")])
    return parse_input(model, dict(params))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def alert_routes(
    engine: AlertEngine, catalog: RuleCatalog, identify: IdentifyCaller, *, strict: bool = False
) -> list[BaseRoute]:
    """The admin alert routes over ``engine`` (and its store) and ``catalog``."""
    store = engine.store

    def route(path: str, methods: list[str], handler: AdminHandler) -> Route:
        return admin_route(path, methods, handler, identify, strict=strict)

    async def list_active(request: Request, caller: Caller) -> Response:
        filters: ActiveFilters = parse_query(request, ActiveFilters)
        alerts = [
            alert
            for alert in engine.active_alerts()
            if (filters.severity is None or alert.severity is filters.severity)
            and (filters.category is None or alert.category is filters.category)
            and (filters.state is None or alert.state is filters.state)
            and (filters.rule_id is None or alert.rule_id == filters.rule_id)
            and (filters.silenced is None or alert.silenced is filters.silenced)
        ]
        return JSONResponse({"alerts": [alert.to_dict() for alert in alerts]})

    async def history(request: Request, caller: Caller) -> Response:
        filters: HistoryFilters = parse_query(request, HistoryFilters)
        query = AlertQuery(
            rule_id=filters.rule_id,
            state=filters.state,
            severity=filters.severity,
            category=filters.category,
            fingerprint=filters.fingerprint,
            since=filters.since,
            until=filters.until,
            limit=filters.limit,
        )
        alerts = await store.history(query)
        for alert in alerts:
            alert.silenced = alert.active and engine.is_silenced(alert)
        return JSONResponse({"alerts": [alert.to_dict() for alert in alerts]})

    async def get_alert(request: Request, caller: Caller) -> Response:
        alert_id = request.path_params["alert_id"]
        detail = await store.get(alert_id)
        live = {alert.id: alert for alert in engine.active_alerts()}.get(alert_id)
        if detail is None and live is None:
            return error_response(request, 404, "not_found", f"no alert {alert_id!r}")
        alert = live if live is not None else detail.alert if detail is not None else None
        assert alert is not None
        if live is None:
            alert.silenced = alert.active and engine.is_silenced(alert)
        body: dict[str, Any] = {"alert": alert.to_dict(), "events": [], "deliveries": []}
        if detail is not None:
            attempts: dict[int, list[dict[str, Any]]] = {}
            for attempt in detail.attempts:
                attempts.setdefault(attempt.delivery_id, []).append(
                    {
                        "at": attempt.at.isoformat(),
                        "outcome": attempt.outcome,
                        "latency_ms": attempt.latency_ms,
                        "detail": attempt.detail,
                    }
                )
            body["events"] = [event.to_dict() for event in detail.events]
            body["deliveries"] = [
                {**delivery.to_dict(), "attempt_log": attempts.get(delivery.id, [])}
                for delivery in detail.deliveries
            ]
        return JSONResponse(body)

    async def raise_alert(request: Request, caller: Caller) -> Response:
        data: ManualAlert = parse_input(ManualAlert, await read_json(request))
        labels = {**data.labels}
        alert = await engine.raise_alert(
            data.title,
            data.description,
            data.severity,
            data.category,
            {**data.properties, "raised_by": caller.name or ""},
            data.affected_components,
            labels=labels,
        )
        return JSONResponse({"alert": alert.to_dict()}, status_code=201)

    async def resolve(request: Request, caller: Caller) -> Response:
        alert_id = request.path_params["alert_id"]
        if alert_id not in {alert.id for alert in engine.active_alerts()}:
            # (a follower's view of the active alerts may be a second old: the store says)
            detail = await store.get(alert_id)
            if detail is None:
                return error_response(request, 404, "not_found", f"no alert {alert_id!r}")
            resolved = detail.alert
            if resolved.state is AlertState.RESOLVED:
                return error_response(
                    request,
                    409,
                    "conflict",
                    f"alert {alert_id!r} is already resolved"
                    + (f" (by {resolved.resolved_by})" if resolved.resolved_by else ""),
                )
        alert = await engine.resolve(alert_id, caller.name or "admin")
        return JSONResponse({"alert": alert.to_dict()})

    async def list_rules(request: Request, caller: Caller) -> Response:
        return JSONResponse({"rules": [catalog.describe(rule) for rule in catalog.rules()]})

    async def get_rule(request: Request, caller: Caller) -> Response:
        rule = catalog.get(request.path_params["rule_id"])
        return JSONResponse({"rule": catalog.describe(rule)})

    async def create_rule(request: Request, caller: Caller) -> Response:
        rule = await catalog.create(await read_json(request), caller.name)
        return JSONResponse({"rule": catalog.describe(rule)}, status_code=201)

    async def replace_rule(request: Request, caller: Caller) -> Response:
        rule_id = request.path_params["rule_id"]
        rule = await catalog.replace(rule_id, await read_json(request), caller.name)
        return JSONResponse({"rule": catalog.describe(rule)})

    async def delete_rule(request: Request, caller: Caller) -> Response:
        restored = await catalog.delete(request.path_params["rule_id"])
        if restored is None:
            return Response(status_code=204)
        return JSONResponse({"restored": catalog.describe(restored)})

    async def list_silences(request: Request, caller: Caller) -> Response:
        now = engine.clock.now()
        silences = await store.list_silences()
        return JSONResponse(
            {
                "silences": [
                    {**silence.model_dump(mode="json"), "active": silence.active(now)}
                    for silence in silences
                ]
            }
        )

    async def create_silence(request: Request, caller: Caller) -> Response:
        data: SilenceInput = parse_input(SilenceInput, await read_json(request))
        values = {
            "matchers": data.matchers,
            "starts_at": data.starts_at or engine.clock.now(),
            "ends_at": data.ends_at,
            "created_by": caller.name or "admin",
            "comment": data.comment,
        }
        silence: Silence = parse_input(Silence, values)
        saved = await engine.add_silence(silence)
        body = {**saved.model_dump(mode="json"), "active": saved.active(engine.clock.now())}
        return JSONResponse({"silence": body}, status_code=201)

    async def delete_silence(request: Request, caller: Caller) -> Response:
        await engine.remove_silence(request.path_params["silence_id"])
        return Response(status_code=204)

    return [
        route("/api/alerts", ["GET"], list_active),
        route("/api/alerts", ["POST"], raise_alert),
        route("/api/alerts/history", ["GET"], history),
        route("/api/alerts/rules", ["GET"], list_rules),
        route("/api/alerts/rules", ["POST"], create_rule),
        route("/api/alerts/rules/{rule_id}", ["GET"], get_rule),
        route("/api/alerts/rules/{rule_id}", ["PUT"], replace_rule),
        route("/api/alerts/rules/{rule_id}", ["DELETE"], delete_rule),
        route("/api/alerts/silences", ["GET"], list_silences),
        route("/api/alerts/silences", ["POST"], create_silence),
        route("/api/alerts/silences/{silence_id}", ["DELETE"], delete_silence),
        route("/api/alerts/{alert_id}", ["GET"], get_alert),
        route("/api/alerts/{alert_id}/resolve", ["POST"], resolve),
    ]
