"""SMS: Critical alerts through Twilio's Messages REST API.

One ``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`` per
recipient (form fields ``To``, ``From``, ``Body``; HTTP basic auth with the
account SID and auth token), sent concurrently. The body always fits one SMS
segment (see :func:`fit_one_segment`), so a page never arrives in pieces.

SMS carries Critical alerts only, whatever the routing says (texts cost money
and wake people up); the channel refuses anything else as a permanent failure,
except test notifications.

**Partial failure.** A notification has one idempotency key but several
recipients. The notifier remembers, per key, which recipients Twilio accepted
(for the last 1,000 keys, in memory), and a retry with the same key texts only
the others. So when some recipients fail the whole send raises
:class:`DeliveryError` (not permanent if any failure may pass, with the longest
``retry_after``), and the dispatcher's ordinary retry completes it without
texting anyone twice, as long as the process lives. After a restart the memory
is gone and a retry texts everyone again: at least once, never lost.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import OrderedDict
from urllib.parse import urlencode

from digitalme.monitoring.clock import Clock, SystemClock
from digitalme.monitoring.notifiers.errors import ChannelConfigError, DeliveryError
from digitalme.monitoring.notifiers.http import HttpAnswer, HttpPoster
from digitalme.monitoring.notifiers.masking import SecretMask
from digitalme.monitoring.notifiers.message import Notification, NotificationKind, headline
from digitalme.monitoring.notifiers.protocol import DeliveryReceipt
from digitalme.monitoring.telemetry.items import Severity
from digitalme.settings import SmsSettings

__all__ = ["SmsNotifier", "fit_one_segment", "sms_body"]

GSM7_SEGMENT = 160  # septets in a single-segment GSM-7 message
UCS2_SEGMENT = 70  # UTF-16 code units in a single-segment UCS-2 message
REMEMBERED_KEYS = 1000

# GSM 03.38: the basic set costs one septet, the extension set two (escape + char).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


def _gsm7_cost(char: str) -> int | None:
    if char in _GSM7_BASIC:
        return 1
    if char in _GSM7_EXTENSION:
        return 2
    return None


def fit_one_segment(text: str) -> str:
    """``text`` cut to one SMS segment, ending with an ellipsis when cut.

    GSM-7 text gets 160 septets (extension characters such as ``[`` cost two)
    and ends in ``...`` (the ``…`` character is not GSM-7); anything else is
    sent as UCS-2, 70 UTF-16 units, ending in ``…``.
    """
    costs = [_gsm7_cost(char) for char in text]
    if all(cost is not None for cost in costs):
        limit, ellipsis = GSM7_SEGMENT, "..."
        units = [cost or 0 for cost in costs]
    else:
        limit, ellipsis = UCS2_SEGMENT, "…"
        units = [2 if ord(char) > 0xFFFF else 1 for char in text]
    if sum(units) <= limit:
        return text
    # The whole text is over the limit, so this stops before running out of characters.
    budget = limit - len(ellipsis)
    used = index = 0
    while used + units[index] <= budget:
        used += units[index]
        index += 1
    return text[:index].rstrip() + ellipsis


def sms_body(notification: Notification) -> str:
    """``[Critical] title (N events) - description``, in one segment."""
    text = headline(notification)
    if notification.count > 1:
        text += f" ({notification.count} events)"
    if not notification.resolved and notification.description:
        text += " - " + notification.description
    return fit_one_segment(" ".join(text.split()))


def _tail(number: str) -> str:
    """A phone number as shown in receipts and reasons: its last four digits."""
    return "…" + number[-4:]


def _twilio_error(answer: HttpAnswer) -> str | None:
    """Twilio's error JSON (``code``, ``message``) as a short detail."""
    try:
        error = json.loads(answer.body)
    except ValueError:
        return None
    if not isinstance(error, dict):
        return None
    code, message = error.get("code"), error.get("message")
    if code is None and message is None:
        return None
    return f"Twilio error {code}: {message}"


class SmsNotifier:
    """Texts Critical alerts to ``notifications.sms.recipients`` through Twilio."""

    name = "sms"

    def __init__(self, settings: SmsSettings, *, clock: Clock | None = None) -> None:
        if settings.account_sid is None or settings.auth_token is None:
            raise ChannelConfigError("notifications.sms.account_sid and auth_token")
        if settings.from_number is None:
            raise ChannelConfigError("notifications.sms.from_number")
        token = settings.auth_token.get_secret_value()
        credentials = base64.b64encode(f"{settings.account_sid}:{token}".encode()).decode()
        self._authorization = f"Basic {credentials}"
        self._url = f"{settings.base_url}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        self._from = settings.from_number
        self._recipients = tuple(dict.fromkeys(settings.recipients))
        self._sent: OrderedDict[str, set[str]] = OrderedDict()
        self._mask = SecretMask(secrets=[token, credentials])
        self._poster = HttpPoster(
            self.name,
            timeout=settings.timeout,
            mask=self._mask,
            clock=clock or SystemClock(),
            describe_error=_twilio_error,
        )

    async def send(self, notification: Notification) -> DeliveryReceipt:
        if notification.severity is not Severity.CRITICAL and (
            notification.kind is not NotificationKind.TEST
        ):
            raise DeliveryError(self.name, "SMS carries Critical alerts only", permanent=True)
        sent = self._remember(notification.key)
        pending = [number for number in self._recipients if number not in sent]
        body = sms_body(notification)
        outcomes = await asyncio.gather(*(self._text(number, body) for number in pending))
        receipts: list[str] = []
        failures: list[tuple[str, DeliveryError]] = []
        for number, outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, DeliveryError):
                failures.append((number, outcome))
            else:
                sent.add(number)
                receipts.append(f"{_tail(number)} {outcome}".rstrip())
        if failures:
            raise self._partial_failure(failures, len(self._recipients))
        detail = f"sent to {len(receipts)} of {len(self._recipients)}"
        if receipts:
            detail += ": " + ", ".join(receipts)
        if len(receipts) < len(self._recipients):
            detail += f" ({len(self._recipients) - len(receipts)} sent by an earlier attempt)"
        return DeliveryReceipt(self.name, detail)

    def _remember(self, key: str) -> set[str]:
        """The recipients already texted for ``key`` (a live set to add to)."""
        sent = self._sent.setdefault(key, set())
        self._sent.move_to_end(key)
        while len(self._sent) > REMEMBERED_KEYS:
            self._sent.popitem(last=False)
        return sent

    async def _text(self, number: str, body: str) -> str | DeliveryError:
        """The message SID Twilio gave (possibly empty), or why it refused."""
        form = urlencode({"To": number, "From": self._from, "Body": body}).encode()
        try:
            answer = await self._poster.post(
                self._url,
                content=form,
                headers={
                    "authorization": self._authorization,
                    "content-type": "application/x-www-form-urlencoded",
                    "accept": "application/json",
                },
            )
        except DeliveryError as error:
            return error
        try:
            sid = json.loads(answer.body).get("sid")
        except (ValueError, AttributeError):
            sid = None
        return sid if isinstance(sid, str) else ""

    def _partial_failure(
        self, failures: list[tuple[str, DeliveryError]], total: int
    ) -> DeliveryError:
        transient = [error for _, error in failures if not error.permanent]
        waits = [error.retry_after for error in transient if error.retry_after is not None]
        statuses = {error.status for _, error in failures}
        reason = f"{len(failures)} of {total} recipients failed: " + "; ".join(
            f"{_tail(number)}: {error.reason}" for number, error in failures
        )
        return DeliveryError(
            self.name,
            self._mask(reason),
            permanent=not transient,
            retry_after=max(waits) if waits else None,
            status=statuses.pop() if len(statuses) == 1 else None,
        )

    async def aclose(self) -> None:
        await self._poster.aclose()

    def __repr__(self) -> str:
        return f"SmsNotifier(recipients={len(self._recipients)})"
