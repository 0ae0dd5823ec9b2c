"""The HTTP channels' shared policy: timeouts, status mapping, Retry-After, no secret in logs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from digitalme.monitoring.notifiers import DeliveryError
from digitalme.monitoring.notifiers.http import HttpPoster, parse_retry_after
from digitalme.monitoring.notifiers.masking import SecretMask
from digitalme.monitoring.testing import FakeClock
from receivers import HttpReceiver, Reply
from servers import find_free_port

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
SECRET_PATH = "/services/T000/B000/secret-token-in-path"


def poster(clock: FakeClock, url: str, timeout: float = 5.0) -> HttpPoster:
    return HttpPoster("test", timeout=timeout, mask=SecretMask(urls=[url]), clock=clock)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("999999", 3600.0),  # bounded
        ("soon", None),
        ("-5", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_as_a_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


async def test_2xx_is_delivered(http_receiver: HttpReceiver, clock: FakeClock) -> None:
    http_receiver.script(Reply(202, b"accepted"))
    url = http_receiver.url("/hook")
    answer = await poster(clock, url).post(url, content=b"{}", headers={"x-test": "1"})
    assert (answer.status, answer.body) == (202, b"accepted")
    (request,) = http_receiver.requests
    assert (request.method, request.path, request.body) == ("POST", "/hook", b"{}")
    assert request.headers["x-test"] == "1"
    assert request.headers["user-agent"].startswith("DigitalMe-Alerts")


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(500, False), (502, False), (503, False), (408, False), (429, False), (400, True),
     (401, True), (403, True), (404, True), (410, True), (301, True)],
)  # fmt: skip
async def test_status_decides_whether_a_retry_can_help(
    http_receiver: HttpReceiver, clock: FakeClock, status: int, permanent: bool
) -> None:
    http_receiver.script(Reply(status, b"nope", {"location": "http://elsewhere/"}))
    url = http_receiver.url(SECRET_PATH)
    with pytest.raises(DeliveryError) as caught:
        await poster(clock, url).post(url, content=b"{}", headers={})
    error = caught.value
    assert (error.permanent, error.status, error.channel) == (permanent, status, "test")
    assert error.reason.startswith(f"HTTP {status}: nope")


async def test_a_503_with_retry_after_says_when(
    http_receiver: HttpReceiver, clock: FakeClock
) -> None:
    http_receiver.script(Reply(503, b"", {"retry-after": "7"}))
    url = http_receiver.url()
    with pytest.raises(DeliveryError) as caught:
        await poster(clock, url).post(url, content=b"", headers={})
    assert caught.value.retry_after == 7.0
    assert str(caught.value) == "test: HTTP 503 (retry after 7 s)"


async def test_no_answer_within_the_timeout_is_retryable(
    http_receiver: HttpReceiver, clock: FakeClock
) -> None:
    http_receiver.script(Reply(200, delay=5.0))
    url = http_receiver.url()
    with pytest.raises(DeliveryError) as caught:
        await poster(clock, url, timeout=0.2).post(url, content=b"", headers={})
    assert not caught.value.permanent
    assert caught.value.reason == "no answer within 0.2 s"


async def test_nobody_listening_is_retryable_and_names_no_url(clock: FakeClock) -> None:
    url = f"http://127.0.0.1:{find_free_port()}{SECRET_PATH}"
    with pytest.raises(DeliveryError) as caught:
        await poster(clock, url).post(url, content=b"", headers={})
    assert not caught.value.permanent
    assert caught.value.reason.startswith("network error: ConnectError")
    assert "secret-token" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_the_url_is_never_logged(
    http_receiver: HttpReceiver, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # httpx.AsyncClient would log "HTTP Request: POST <url>" at INFO.
    caplog.set_level(logging.DEBUG)
    url = http_receiver.url(SECRET_PATH)
    await poster(clock, url).post(url, content=b"{}", headers={})
    assert caplog.records, "the transport's debug log was expected to be captured"
    assert all("secret-token" not in record.getMessage() for record in caplog.records)


async def test_the_connection_is_reused_and_can_be_reopened(
    http_receiver: HttpReceiver, clock: FakeClock
) -> None:
    url = http_receiver.url()
    sender = poster(clock, url)
    await sender.post(url, content=b"1", headers={})
    await sender.aclose()
    await sender.post(url, content=b"2", headers={})
    await sender.aclose()
    assert [request.body for request in http_receiver.requests] == [b"1", b"2"]


def test_mask_covers_the_url_its_path_and_query_and_bounds_length() -> None:
    mask = SecretMask(
        secrets=["pw", None], urls=["https://h.example/path-secret?token=query-secret", None]
    )
    assert mask("at https://h.example/path-secret?token=query-secret") == "at ***"
    assert mask("GET /path-secret failed") == "GET *** failed"
    assert mask("token=query-secret") == "***"
    assert mask("pw!") == "***!"
    assert len(mask("x" * 1000)) == 300
