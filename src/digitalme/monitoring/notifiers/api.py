"""``POST /api/notifications/test``: send a test message through one channel now (admins only).

Body: ``{"channel": "slack"}`` (and optionally ``"severity"``, Critical by
default, which picks the email recipients). The answer says what happened:
200 with the receiver's receipt, 502 ``delivery_failed`` with the channel's
reason (``permanent``, ``status`` and ``retry_after`` as fields), 422 for a
channel that is unknown or not enabled. Reasons and receipts never hold a
channel secret (the channels mask them). The test bypasses routing and the
outbox: nothing is stored, nothing is retried.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

import structlog
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from digitalme.monitoring.access import Caller, IdentifyCaller, error_response
from digitalme.monitoring.alerts.api import (
    ApiInput,
    InvalidInput,
    SeverityField,
    admin_route,
    parse_input,
    read_json,
)
from digitalme.monitoring.alerts.errors import FieldProblem
from digitalme.monitoring.clock import Clock
from digitalme.monitoring.notifiers.errors import DeliveryError
from digitalme.monitoring.notifiers.message import Notification, NotificationKind
from digitalme.monitoring.notifiers.protocol import Notifier
from digitalme.monitoring.telemetry.items import Severity

__all__ = ["notification_routes", "test_notification"]

log = structlog.get_logger("digitalme.monitoring.notifiers")


class TestRequest(ApiInput):
    __test__ = False  # not a pytest class

    channel: str = Field(min_length=1, max_length=50)
    severity: SeverityField = Severity.CRITICAL


def test_notification(
    channel: str, severity: Severity, by: str | None, clock: Clock
) -> Notification:
    """The message ``POST /api/notifications/test`` sends."""
    now = clock.now()
    return Notification(
        key=f"test:{uuid.uuid4().hex}:{channel}",
        kind=NotificationKind.TEST,
        alert_id="test",
        fingerprint="test",
        title="Test notification from DigitalMe",
        description=(
            f"A test of the {channel} channel"
            + (f", sent by {by}" if by else "")
            + ". No action is needed."
        ),
        severity=severity,
        category="Test",
        starts_at=now,
    )


def notification_routes(
    notifiers: Mapping[str, Notifier],
    clock: Clock,
    identify: IdentifyCaller,
    *,
    strict: bool = False,
) -> list[BaseRoute]:
    async def send_test(request: Request, caller: Caller) -> Response:
        data: TestRequest = parse_input(TestRequest, await read_json(request))
        notifier = notifiers.get(data.channel)
        if notifier is None:
            enabled = ", ".join(sorted(notifiers)) or "none"
            raise InvalidInput(
                [
                    FieldProblem(
                        "channel",
                        f"{data.channel!r} is not an enabled channel (enabled: {enabled})",
                    )
                ]
            )
        notification = test_notification(data.channel, data.severity, caller.name, clock)
        started = time.perf_counter()
        try:
            receipt = await notifier.send(notification)
        except DeliveryError as exc:
            return error_response(
                request,
                502,
                "delivery_failed",
                str(exc),
                extra={
                    "channel": data.channel,
                    "permanent": exc.permanent,
                    "status": exc.status,
                    "retry_after": exc.retry_after,
                },
            )
        latency = round((time.perf_counter() - started) * 1000.0, 3)
        log.info("test_notification_sent", channel=data.channel, by=caller.name)
        return JSONResponse(
            {
                "channel": data.channel,
                "outcome": "sent",
                "detail": receipt.detail,
                "latency_ms": latency,
            }
        )

    return [
        admin_route("/api/notifications/test", ["POST"], send_test, identify, strict=strict),
    ]
