"""Email: alert messages over SMTP (aiosmtplib).

``notifications.email.security`` picks the connection: ``starttls`` (the
default, port 587: plain connect, then a required STARTTLS upgrade), ``tls``
(implicit TLS, usually port 465) or ``none`` (a local relay; no login then).
Certificates are verified against the system's CAs plus ``ca_file``.

Recipients: Critical alerts go to ``critical_alert_recipients``, the others to
``standard_alert_recipients``; when that list is empty the other one is used,
so an enabled channel always reaches someone. A resolved notice goes to the
same list as its alert's firing notice (same severity).

The message is multipart/alternative (plain text and HTML; all alert text is
HTML-escaped), with a subject like ``[Critical] <title>`` or ``[RESOLVED]
<title>``, ``Auto-Submitted: auto-generated`` (so that out-of-office replies
stay away), and a Message-ID derived from the idempotency key: a retry of the
same delivery carries the same Message-ID, which lets mail systems drop the
copy if a first attempt did get through before its answer was lost.

Failures: no connection, a dropped connection or a timeout, and 4xx replies
are not permanent; 5xx replies (a refused login, sender or every recipient),
an untrusted certificate and a server without STARTTLS (or AUTH, with a login)
are permanent. When the
server takes the message for some recipients and refuses others, the delivery
succeeds and the receipt names the refused ones: sending again would duplicate
it for those who got it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape

import aiosmtplib

from digitalme.monitoring.clock import Clock, SystemClock
from digitalme.monitoring.notifiers.errors import DeliveryError
from digitalme.monitoring.notifiers.masking import SecretMask
from digitalme.monitoring.notifiers.message import Notification, facts, headline
from digitalme.monitoring.notifiers.protocol import DeliveryReceipt
from digitalme.monitoring.telemetry.items import Severity
from digitalme.settings import EmailSettings

__all__ = ["EmailNotifier", "build_email", "message_id"]

MAX_SUBJECT_LENGTH = 200
# Bar colours of the HTML part (resolved notices are green).
HTML_COLOURS: dict[Severity, str] = {
    Severity.CRITICAL: "#d40e0d",
    Severity.HIGH: "#ec9a1c",
    Severity.MEDIUM: "#ffaa00",
    Severity.LOW: "#ffaa00",
}
RESOLVED_HTML_COLOUR = "#2eb67d"


def message_id(key: str, sender: str) -> str:
    """``<hash-of-key.digitalme@sender-domain>``: the same for every attempt of a delivery."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    domain = sender.rpartition("@")[2] or "digitalme"
    return f"<{digest}.digitalme@{domain}>"


def _one_line(text: str) -> str:
    """Header-safe text: no line breaks (header injection), bounded."""
    text = " ".join(text.split())
    if len(text) > MAX_SUBJECT_LENGTH:
        text = text[: MAX_SUBJECT_LENGTH - 1] + "…"
    return text


def _plain_text(notification: Notification) -> str:
    lines = [headline(notification), ""]
    lines += [f"{label}: {value}" for label, value in facts(notification)]
    if notification.dashboard_url:
        lines += ["", f"Dashboard: {notification.dashboard_url}"]
    lines += ["", "-- ", "DigitalMe monitoring"]
    return "\n".join(lines) + "\n"


def _html(notification: Notification) -> str:
    colour = RESOLVED_HTML_COLOUR if notification.resolved else HTML_COLOURS[notification.severity]
    rows = "".join(
        f'<tr><th align="left" valign="top" style="padding:4px 12px 4px 0">{escape(label)}</th>'
        f'<td style="padding:4px 0;white-space:pre-wrap">{escape(value)}</td></tr>'
        for label, value in facts(notification)
    )
    link = ""
    if notification.dashboard_url:
        link = f'<p><a href="{escape(notification.dashboard_url)}">Open in the dashboard</a></p>'
    return (
        '<!DOCTYPE html><html><body style="font-family:sans-serif">'
        f'<div style="border-left:6px solid {colour};padding-left:12px">'
        f"<h2>{escape(headline(notification))}</h2>"
        f"<table>{rows}</table>{link}</div>"
        '<p style="color:#888">DigitalMe monitoring</p></body></html>\n'
    )


def build_email(
    notification: Notification, *, sender: str, recipients: Sequence[str], now: datetime
) -> EmailMessage:
    """The multipart/alternative message for ``notification``."""
    message = EmailMessage()
    message["Subject"] = _one_line(headline(notification))
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(notification.key, sender)
    message["Auto-Submitted"] = "auto-generated"
    message["X-DigitalMe-Alert-Id"] = _one_line(notification.alert_id)
    message["X-DigitalMe-Severity"] = str(notification.severity)
    message.set_content(_plain_text(notification))
    message.add_alternative(_html(notification), subtype="html")
    return message


class EmailNotifier:
    """Sends alert emails through the SMTP server in ``notifications.email``."""

    name = "email"

    def __init__(self, settings: EmailSettings, *, clock: Clock | None = None) -> None:
        self._settings = settings
        self._password = None if settings.password is None else settings.password.get_secret_value()
        self._mask = SecretMask(secrets=[self._password])
        self._clock = clock or SystemClock()
        self._tls_context: ssl.SSLContext | None = None
        if settings.ca_file is not None:
            # Verification stays on: the extra CAs are added to the system's.
            self._tls_context = ssl.create_default_context()
            self._tls_context.load_verify_locations(cafile=settings.ca_file)

    def recipients(self, severity: Severity) -> list[str]:
        """Who gets an alert of ``severity`` (the other list when its own is empty)."""
        critical = self._settings.critical_alert_recipients
        standard = self._settings.standard_alert_recipients
        if severity is Severity.CRITICAL:
            return list(critical or standard)
        return list(standard or critical)

    async def send(self, notification: Notification) -> DeliveryReceipt:
        recipients = self.recipients(notification.severity)
        if not recipients:
            raise DeliveryError(self.name, "no recipients configured", permanent=True)
        message = build_email(
            notification,
            sender=self._settings.sender,
            recipients=recipients,
            now=self._clock.now(),
        )
        settings = self._settings
        try:
            # aiosmtplib's timeout applies per command; this bounds the whole exchange.
            async with asyncio.timeout(settings.timeout):
                refused, reply = await self._deliver(message, recipients)
        except TimeoutError:
            raise DeliveryError(
                self.name, f"no answer within {settings.timeout:g} s", permanent=False
            ) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise self._refused_by_all(exc) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                self.name,
                self._mask(f"SMTP {exc.code}: {exc.message}"),
                permanent=exc.code >= 500,
                status=exc.code,
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._connection_failure(exc) from None
        accepted = len(recipients) - len(refused)
        detail = f"accepted for {accepted} of {len(recipients)} recipients: {reply}"
        if refused:
            detail += "; refused: " + ", ".join(
                f"{address} ({response.code})" for address, response in refused.items()
            )
        return DeliveryReceipt(self.name, self._mask(detail))

    async def _deliver(
        self, message: EmailMessage, recipients: list[str]
    ) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        """One SMTP session: connect, STARTTLS, login, send, quit."""
        settings = self._settings
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_server,
            port=settings.smtp_port,
            use_tls=settings.security == "tls",
            start_tls=False,  # done below, so that a server without it is refused
            tls_context=self._tls_context,
            timeout=settings.timeout,
        )
        await client.connect()
        try:
            if settings.security == "starttls":
                await client.ehlo()
                if not client.supports_extension("starttls"):
                    # Never fall back to clear text.
                    raise DeliveryError(
                        self.name, "the server does not offer STARTTLS", permanent=True
                    )
                await client.starttls()
            if settings.username is not None and self._password is not None:
                await client.ehlo()
                if not client.supports_extension("auth"):
                    raise DeliveryError(self.name, "the server does not offer AUTH", permanent=True)
                await client.login(settings.username, self._password)
            result = await client.send_message(
                message, sender=settings.sender, recipients=recipients
            )
            # Delivered: a failed goodbye must not turn into a retry (a duplicate).
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        finally:
            client.close()
        return result

    def _refused_by_all(self, exc: aiosmtplib.SMTPRecipientsRefused) -> DeliveryError:
        codes = [refusal.code for refusal in exc.recipients]
        reasons = "; ".join(
            f"{refusal.recipient}: SMTP {refusal.code} {refusal.message}"
            for refusal in exc.recipients
        )
        return DeliveryError(
            self.name,
            self._mask(f"every recipient refused: {reasons}"),
            permanent=all(code >= 500 for code in codes),
            status=codes[0] if len(set(codes)) == 1 else None,
        )

    def _connection_failure(self, exc: BaseException) -> DeliveryError:
        # A certificate that does not verify will not start verifying on a retry.
        cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__ or exc.__context__
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = f"TLS certificate not trusted: {cause.verify_message}"
            return DeliveryError(self.name, self._mask(reason), permanent=True)
        reason = f"connection failed: {type(exc).__name__}: {exc}"
        return DeliveryError(self.name, self._mask(reason), permanent=False)

    async def aclose(self) -> None:
        """Nothing to release: each message uses its own SMTP connection."""

    def __repr__(self) -> str:
        settings = self._settings
        return (
            f"EmailNotifier(server={settings.smtp_server!r}, port={settings.smtp_port}, "
            f"security={settings.security!r})"
        )
