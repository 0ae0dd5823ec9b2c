"""Email over SMTP, against a real aiosmtpd server (plain, STARTTLS, implicit TLS, AUTH)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest

from digitalme.monitoring.notifiers import DeliveryError, Notification, NotificationKind
from digitalme.monitoring.notifiers.email import EmailNotifier, message_id
from digitalme.monitoring.telemetry.items import Severity
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import EmailSettings
from receivers import SmtpReceiver, TestCertificates
from servers import find_free_port

Make = Callable[..., Notification]
USER, PASSWORD = "alerts", "smtp-password-secret"
CRITICAL = ["oncall@example.com"]
STANDARD = ["team@example.com", "dev@example.com"]


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as server:
        yield server


def email(
    port: int,
    clock: FakeClock,
    *,
    security: Literal["none", "starttls", "tls"] = "none",
    **settings: Any,
) -> EmailNotifier:
    config: dict[str, Any] = {
        "enabled": True,
        "smtp_server": "127.0.0.1",
        "smtp_port": port,
        "security": security,
        "sender": "digitalme-alerts@example.com",
        "critical_alert_recipients": CRITICAL,
        "standard_alert_recipients": STANDARD,
        "timeout": 5.0,
    }
    config.update(settings)
    return EmailNotifier(EmailSettings.model_validate(config), clock=clock)


async def test_a_multipart_message_with_text_and_html(
    smtp: SmtpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    notification = make_notification(
        title="Latency <script>alert(1)</script>",
        description="p95 > 2 s & rising",
        dashboard_url="https://dm.example/alerts/1?a=1&b=2",
    )
    receipt = await email(smtp.port, clock).send(notification)
    assert receipt.detail.startswith("accepted for 1 of 1 recipients: 2.0.0")
    (mail,) = smtp.messages
    assert (mail.mail_from, mail.rcpt_tos) == ("digitalme-alerts@example.com", tuple(CRITICAL))
    message = mail.message()
    assert message["Subject"] == "[Critical] Latency <script>alert(1)</script>"
    assert message["To"] == "oncall@example.com"
    assert message["Message-ID"] == message_id(notification.key, "digitalme-alerts@example.com")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] == "Thu, 01 Jan 2026 00:00:00 +0000"
    assert message.get_content_type() == "multipart/alternative"
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None
    assert html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    assert "Description: p95 > 2 s & rising" in text
    assert "Severity: Critical" in text
    assert "Dashboard: https://dm.example/alerts/1?a=1&b=2" in text
    assert "<script>" not in html
    assert "Latency &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "p95 &gt; 2 s &amp; rising" in html
    assert 'href="https://dm.example/alerts/1?a=1&amp;b=2"' in html


async def test_the_message_id_is_the_same_on_every_attempt(make_notification: Make) -> None:
    key = make_notification().key
    assert message_id(key, "a@example.com") == message_id(key, "a@example.com")
    assert message_id(key, "a@example.com") != message_id(key + "x", "a@example.com")
    assert message_id(key, "a@example.com").endswith("@example.com>")


@pytest.mark.parametrize(
    ("severity", "critical", "standard", "expected"),
    [
        (Severity.CRITICAL, CRITICAL, STANDARD, CRITICAL),
        (Severity.HIGH, CRITICAL, STANDARD, STANDARD),
        (Severity.CRITICAL, [], STANDARD, STANDARD),  # falls back to the other list
        (Severity.LOW, CRITICAL, [], CRITICAL),
    ],
)
async def test_recipients_by_severity(
    smtp: SmtpReceiver,
    clock: FakeClock,
    make_notification: Make,
    severity: Severity,
    critical: list[str],
    standard: list[str],
    expected: list[str],
) -> None:
    notifier = email(
        smtp.port,
        clock,
        critical_alert_recipients=critical,
        standard_alert_recipients=standard,
    )
    await notifier.send(make_notification(severity=severity))
    assert list(smtp.messages[0].rcpt_tos) == expected


async def test_resolved_subject(
    smtp: SmtpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    await email(smtp.port, clock).send(make_notification(kind=NotificationKind.RESOLVED))
    assert smtp.messages[0].message()["Subject"] == "[RESOLVED] p95 latency over 2 s"


async def test_header_injection_is_impossible(
    smtp: SmtpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    notification = make_notification(title="hi\r\nBcc: victim@example.com", alert_id="a\nb")
    await email(smtp.port, clock).send(notification)
    message = smtp.messages[0].message()
    assert message["Bcc"] is None
    assert message["Subject"] == "[Critical] hi Bcc: victim@example.com"
    assert smtp.messages[0].rcpt_tos == tuple(CRITICAL)


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_encrypted_and_logged_in(
    certificates: TestCertificates,
    clock: FakeClock,
    make_notification: Make,
    security: Literal["starttls", "tls"],
) -> None:
    with SmtpReceiver(
        security=security, certificates=certificates, credentials=(USER, PASSWORD)
    ) as server:
        notifier = email(
            server.port,
            clock,
            security=security,
            username=USER,
            password=PASSWORD,
            ca_file=certificates.ca_file,
        )
        receipt = await notifier.send(make_notification())
        await notifier.aclose()
    (mail,) = server.messages
    assert mail.encrypted
    assert mail.authenticated_as == USER
    assert PASSWORD not in receipt.detail


async def test_a_wrong_password_is_permanent_and_never_shown(
    certificates: TestCertificates, clock: FakeClock, make_notification: Make
) -> None:
    with SmtpReceiver(
        security="starttls", certificates=certificates, credentials=(USER, PASSWORD)
    ) as server:
        notifier = email(
            server.port,
            clock,
            security="starttls",
            username=USER,
            password="wrong-password-value",
            ca_file=certificates.ca_file,
        )
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(make_notification())
    error = caught.value
    assert (error.permanent, error.status) == (True, 535)
    assert error.reason.startswith("SMTP 535")
    assert "wrong-password-value" not in str(error) + repr(error) + repr(notifier)
    assert server.messages == []


async def test_an_untrusted_certificate_is_permanent(
    certificates: TestCertificates, clock: FakeClock, make_notification: Make
) -> None:
    # No ca_file: the throwaway CA is not among the system's.
    with (
        SmtpReceiver(security="tls", certificates=certificates) as server,
        pytest.raises(DeliveryError) as caught,
    ):
        await email(server.port, clock, security="tls").send(make_notification())
    assert caught.value.permanent
    assert caught.value.reason.startswith("TLS certificate not trusted")


async def test_starttls_is_required_when_configured(
    smtp: SmtpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    # A plain server that offers no STARTTLS: never fall back to clear text.
    with pytest.raises(DeliveryError) as caught:
        await email(smtp.port, clock, security="starttls").send(make_notification())
    assert caught.value.permanent
    assert smtp.messages == []


async def test_server_down_is_retryable(clock: FakeClock, make_notification: Make) -> None:
    with pytest.raises(DeliveryError) as caught:
        await email(find_free_port(), clock).send(make_notification())
    assert not caught.value.permanent
    assert caught.value.reason.startswith("connection failed: SMTPConnectError")


async def test_a_server_that_never_greets_times_out(
    clock: FakeClock, make_notification: Make
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # the kernel accepts the connection; nobody ever speaks
        port = listener.getsockname()[1]
        with pytest.raises(DeliveryError) as caught:
            await email(port, clock, timeout=0.3).send(make_notification())
    assert not caught.value.permanent
    assert caught.value.reason == "no answer within 0.3 s"


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("554 5.7.1 Message rejected as spam", True), ("451 4.3.0 Try again later", False)],
)
async def test_smtp_replies_decide_whether_a_retry_can_help(
    smtp: SmtpReceiver, clock: FakeClock, make_notification: Make, reply: str, permanent: bool
) -> None:
    smtp.data_reply = reply
    with pytest.raises(DeliveryError) as caught:
        await email(smtp.port, clock).send(make_notification())
    code, _, text = reply.partition(" ")
    assert (caught.value.permanent, caught.value.status) == (permanent, int(code))
    assert caught.value.reason == f"SMTP {code}: {text}"


async def test_some_recipients_refused_still_delivers(
    smtp: SmtpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    smtp.refused_recipients["dev@example.com"] = "550 5.1.1 No such user"
    receipt = await email(smtp.port, clock).send(make_notification(severity=Severity.HIGH))
    assert smtp.messages[0].rcpt_tos == ("team@example.com",)
    assert receipt.detail.startswith("accepted for 1 of 2 recipients")
    assert receipt.detail.endswith("refused: dev@example.com (550)")


@pytest.mark.parametrize(("code", "permanent"), [("550", True), ("450", False)])
async def test_every_recipient_refused_fails(
    smtp: SmtpReceiver, clock: FakeClock, make_notification: Make, code: str, permanent: bool
) -> None:
    for address in STANDARD:
        smtp.refused_recipients[address] = f"{code} mailbox unavailable"
    with pytest.raises(DeliveryError) as caught:
        await email(smtp.port, clock).send(make_notification(severity=Severity.MEDIUM))
    assert caught.value.permanent is permanent
    assert caught.value.status == int(code)
    assert caught.value.reason.startswith("every recipient refused: team@example.com: SMTP")
