"""SMS through Twilio's Messages API, against a receiver that speaks it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from digitalme.monitoring.notifiers import DeliveryError, Notification, NotificationKind
from digitalme.monitoring.notifiers.sms import SmsNotifier, fit_one_segment, sms_body
from digitalme.monitoring.telemetry.items import Severity
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import SmsSettings
from receivers import HttpReceiver, ReceivedRequest, Reply, twilio_responder

Make = Callable[..., Notification]
SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "twilio-auth-token-secret"
FROM = "+15005550006"
ONCALL = ["+15551230001", "+15551230002"]


@pytest.fixture
def twilio() -> Iterator[HttpReceiver]:
    with HttpReceiver(twilio_responder(SID, TOKEN)) as receiver:
        yield receiver


def sms(
    receiver: HttpReceiver, clock: FakeClock, recipients: list[str] = ONCALL, token: str = TOKEN
) -> SmsNotifier:
    config = SmsSettings.model_validate(
        {
            "enabled": True,
            "account_sid": SID,
            "auth_token": token,
            "from_number": FROM,
            "recipients": recipients,
            "base_url": receiver.url("/"),
        }
    )
    return SmsNotifier(config, clock=clock)


async def test_one_message_per_recipient(
    twilio: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    notifier = sms(twilio, clock)
    receipt = await notifier.send(make_notification())
    await notifier.aclose()
    requests = sorted(twilio.requests, key=lambda request: request.form()["To"])
    assert [request.form()["To"] for request in requests] == ONCALL
    for request in requests:
        assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
        assert request.basic_auth() == (SID, TOKEN)
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert request.form() == {
            "To": request.form()["To"],
            "From": FROM,
            "Body": "[Critical] p95 latency over 2 s - p95 of http.server.duration is 2.4 s "
            "(threshold 2 s)",
        }
    assert receipt.detail.startswith("sent to 2 of 2: ")
    assert "…0001 SM" in receipt.detail
    assert "…0002 SM" in receipt.detail


async def test_only_critical_alerts_and_tests_are_texted(
    twilio: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    notifier = sms(twilio, clock)
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(make_notification(severity=Severity.HIGH))
    assert caught.value.permanent
    assert caught.value.reason == "SMS carries Critical alerts only"
    assert twilio.requests == []
    await notifier.send(make_notification(severity=Severity.LOW, kind=NotificationKind.TEST))
    assert len(twilio.requests) == 2


async def test_twilio_errors_are_reported_without_the_token(
    twilio: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    with pytest.raises(DeliveryError) as caught:
        await sms(twilio, clock, token="wrong-token-value").send(make_notification())
    error = caught.value
    assert (error.permanent, error.status) == (True, 401)
    assert error.reason == (
        "2 of 2 recipients failed: …0001: HTTP 401: Twilio error 20003: Authenticate; "
        "…0002: HTTP 401: Twilio error 20003: Authenticate"
    )
    assert "wrong-token-value" not in str(error)


async def test_an_invalid_number_is_a_permanent_failure(
    twilio: HttpReceiver, clock: FakeClock, make_notification: Make
) -> None:
    with pytest.raises(DeliveryError) as caught:
        await sms(twilio, clock, recipients=["+15005550001"]).send(make_notification())
    assert caught.value.permanent
    assert "Twilio error 21211: The 'To' number +15005550001 is not a valid" in caught.value.reason


async def test_a_retry_texts_only_the_recipients_that_failed(
    clock: FakeClock, make_notification: Make
) -> None:
    twilio = twilio_responder(SID, TOKEN)
    busy = {"left": 1}

    def flaky(request: ReceivedRequest) -> Reply:
        # The second on-call number's first attempt meets a Twilio hiccup.
        if request.form()["To"] == ONCALL[1] and busy["left"]:
            busy["left"] -= 1
            return Reply.json(
                429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "3"}
            )
        return twilio(request)

    with HttpReceiver(flaky) as receiver:
        notifier = sms(receiver, clock)
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(make_notification())
        assert (caught.value.permanent, caught.value.retry_after) == (False, 3.0)
        assert caught.value.reason.startswith("1 of 2 recipients failed: …0002: HTTP 429")
        receipt = await notifier.send(make_notification())  # the dispatcher's retry, same key
        assert receipt.detail.startswith("sent to 1 of 2: …0002 SM")
        assert receipt.detail.endswith("(1 sent by an earlier attempt)")
        again = await notifier.send(make_notification())  # a duplicate call sends nothing
        assert again.detail == "sent to 0 of 2 (2 sent by an earlier attempt)"
        await notifier.send(make_notification(key="alert-1:fired:2:sms"))  # a new delivery
        texted = [request.form()["To"] for request in receiver.requests]
    assert sorted(texted) == sorted([*ONCALL, ONCALL[1], *ONCALL])


def test_gsm_text_fits_160_characters() -> None:
    assert fit_one_segment("a" * 160) == "a" * 160
    cut = fit_one_segment("a" * 161)
    assert cut == "a" * 157 + "..."
    # "[" and "]" take two septets each.
    cut = fit_one_segment("[x]" + "a" * 200)
    assert cut.startswith("[x]")
    assert cut.endswith("...")
    assert len(cut) + 2 == 160


def test_other_text_fits_70_ucs2_units() -> None:
    assert fit_one_segment("é" * 100) == "é" * 100  # é is GSM-7
    text = "Ошибка " * 20
    cut = fit_one_segment(text)
    assert len(cut.encode("utf-16-le")) // 2 <= 70
    assert cut.endswith("…")
    emoji = fit_one_segment("🔥" * 50)  # two UTF-16 units each, never split
    assert emoji == "🔥" * 34 + "…"


def test_sms_body_has_the_headline_count_and_description(make_notification: Make) -> None:
    body = sms_body(
        make_notification(title="SQL injection", description="from 10.0.0.9\n", count=10_000)
    )
    assert body == "[Critical] SQL injection (10000 events) - from 10.0.0.9"
    resolved = sms_body(make_notification(kind=NotificationKind.RESOLVED))
    assert resolved == "[RESOLVED] p95 latency over 2 s"
