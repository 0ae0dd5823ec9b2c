"""ClaudeModel against a real HTTP server speaking the Messages API (tests/fake_anthropic.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from digitalme.host.llm import (
    ChatTurn,
    ClaudeModel,
    LlmEmptyReply,
    LlmError,
    LlmRateLimited,
    LlmTimeout,
    LlmUpstreamError,
    TurnRole,
    build_conversation_model,
    record_generation,
)
from digitalme.settings import ClaudeSettings
from fake_anthropic import UPSTREAM_SECRET_DETAIL, FakeAnthropic
from servers import find_free_port

API_KEY = "sk-ant-api03-unit-test-key-do-not-leak"
HELLO = [ChatTurn(TurnRole.USER, "Hello")]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=API_KEY) as server:
        yield server


def claude_settings(base_url: str, **overrides: Any) -> ClaudeSettings:
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": base_url,
        "timeout": 2.0,
        "max_retries": 0,
        "model": "claude-test-model",
        "max_tokens": 300,
    }
    return ClaudeSettings(**{**values, **overrides})


@pytest.fixture
async def model(fake: FakeAnthropic) -> AsyncIterator[ClaudeModel]:
    claude = ClaudeModel(claude_settings(fake.base_url))
    try:
        yield claude
    finally:
        await claude.aclose()


async def test_reply_concatenates_text_blocks_and_reports_usage(
    fake: FakeAnthropic, model: ClaudeModel
) -> None:
    fake.answer("Hello", ", ", "world.")

    reply = await model.reply(system="Be brief.", turns=HELLO)

    assert reply.text == "Hello, world."
    assert reply.model == "claude-test-model"
    assert (reply.input_tokens, reply.output_tokens) == (42, 7)
    assert reply.duration_seconds >= 0


async def test_request_carries_system_history_model_and_credentials(
    fake: FakeAnthropic, model: ClaudeModel
) -> None:
    turns = [
        ChatTurn(TurnRole.USER, "Hi"),
        ChatTurn(TurnRole.ASSISTANT, "Hello there"),
        ChatTurn(TurnRole.USER, "How are you?"),
    ]

    await model.reply(system="You are Ada.", turns=turns)

    [request] = fake.requests
    assert request.path == "/v1/messages"
    assert request.body["system"] == "You are Ada."
    assert request.body["model"] == "claude-test-model"
    assert request.body["max_tokens"] == 300
    assert request.body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there"},
        {"role": "user", "content": "How are you?"},
    ]
    # anthropic 2.x authenticates with a bearer token, not x-api-key.
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize(
    ("status", "retryable", "error_type"),
    [
        (500, True, "api_error"),
        (529, True, "overloaded_error"),
        (400, False, "invalid_request_error"),
        (403, False, "permission_error"),
    ],
)
async def test_error_status_becomes_upstream_error(
    fake: FakeAnthropic, model: ClaudeModel, status: int, retryable: bool, error_type: str
) -> None:
    fake.fail(status)

    with pytest.raises(LlmUpstreamError) as caught:
        await model.reply(system="s", turns=HELLO)

    error = caught.value
    assert type(error) is LlmUpstreamError
    assert error.status == status
    assert error.retryable is retryable
    assert error.error_type == error_type
    assert error.upstream_request_id == "req_fake"
    assert UPSTREAM_SECRET_DETAIL not in str(error)


async def test_wrong_api_key_is_a_non_retryable_401(fake: FakeAnthropic) -> None:
    claude = ClaudeModel(claude_settings(fake.base_url, api_key="sk-ant-wrong"))
    try:
        with pytest.raises(LlmUpstreamError) as caught:
            await claude.reply(system="s", turns=HELLO)
    finally:
        await claude.aclose()
    assert (caught.value.status, caught.value.retryable) == (401, False)
    assert "sk-ant-wrong" not in str(caught.value)


async def test_rate_limit_carries_retry_after(fake: FakeAnthropic, model: ClaudeModel) -> None:
    fake.fail(429, headers={"retry-after": "7"})

    with pytest.raises(LlmRateLimited) as caught:
        await model.reply(system="s", turns=HELLO)

    assert caught.value.status == 429
    assert caught.value.retry_after == 7.0
    assert caught.value.retryable is True
    assert isinstance(caught.value, LlmUpstreamError)


async def test_slow_upstream_times_out(fake: FakeAnthropic) -> None:
    fake.slow(10.0)
    claude = ClaudeModel(claude_settings(fake.base_url, timeout=0.3))
    try:
        with pytest.raises(LlmTimeout) as caught:
            await claude.reply(system="s", turns=HELLO)
    finally:
        await claude.aclose()
    assert caught.value.retryable is True
    assert len(fake.requests) == 1


async def test_refused_connection_is_an_upstream_error_without_status() -> None:
    claude = ClaudeModel(claude_settings(f"http://127.0.0.1:{find_free_port()}"))
    try:
        with pytest.raises(LlmUpstreamError) as caught:
            await claude.reply(system="s", turns=HELLO)
    finally:
        await claude.aclose()
    assert caught.value.status is None
    assert caught.value.retryable is True


async def test_sdk_retries_are_honoured(fake: FakeAnthropic) -> None:
    fake.fail(500)
    claude = ClaudeModel(claude_settings(fake.base_url, max_retries=2))
    try:
        with pytest.raises(LlmUpstreamError):
            await claude.reply(system="s", turns=HELLO)
    finally:
        await claude.aclose()
    assert len(fake.requests) == 3


async def test_reply_without_text_is_an_error(fake: FakeAnthropic, model: ClaudeModel) -> None:
    fake.answer("")

    with pytest.raises(LlmEmptyReply) as caught:
        await model.reply(system="s", turns=HELLO)

    assert caught.value.stop_reason == "end_turn"
    assert caught.value.retryable is False


@pytest.mark.parametrize("mode", ["fail-500", "fail-400", "fail-429", "slow", "refused"])
async def test_api_key_never_appears_in_errors(fake: FakeAnthropic, mode: str) -> None:
    base_url = fake.base_url
    if mode == "slow":
        fake.slow(10.0)
    elif mode == "refused":
        base_url = f"http://127.0.0.1:{find_free_port()}"
    else:
        fake.fail(int(mode.removeprefix("fail-")))
    claude = ClaudeModel(claude_settings(base_url, timeout=0.3))
    try:
        with pytest.raises(LlmError) as caught:
            await claude.reply(system="s", turns=HELLO)
    finally:
        await claude.aclose()
    error = caught.value
    for text in (str(error), repr(error), repr(vars(error)), repr(claude)):
        assert API_KEY not in text
        assert UPSTREAM_SECRET_DETAIL not in text
    # The SDK's exception (whose request holds the key) is not chained for display.
    assert error.__cause__ is None
    assert error.__suppress_context__ is True


async def test_build_conversation_model_needs_an_api_key(fake: FakeAnthropic) -> None:
    assert build_conversation_model(ClaudeSettings()) is None
    built = build_conversation_model(claude_settings(fake.base_url))
    assert isinstance(built, ClaudeModel)
    await built.aclose()
    with pytest.raises(ValueError, match=r"claude\.api_key"):
        ClaudeModel(ClaudeSettings())


def test_record_generation_logs_one_structured_line() -> None:
    with capture_logs() as logs:
        record_generation(duration_seconds=0.25, model="m", success=True, user_id=3, profile_id=9)
        record_generation(
            duration_seconds=1.5,
            model="m",
            success=False,
            user_id=3,
            profile_id=9,
            error=LlmUpstreamError("x", status=529, retryable=True, error_type="overloaded_error"),
        )

    ok, failed = logs
    assert ok == {
        "event": "personality_generation",
        "log_level": "info",
        "duration_ms": 250.0,
        "model": "m",
        "success": True,
        "user_id": 3,
        "profile_id": 9,
    }
    assert failed["event"] == "personality_generation"
    assert failed["log_level"] == "warning"
    assert failed["success"] is False
    assert failed["duration_ms"] == 1500.0
    assert failed["error"] == "upstream_status"
    assert failed["upstream_status"] == 529
    assert failed["upstream_error_type"] == "overloaded_error"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (LlmTimeout(), "timeout"),
        (LlmRateLimited(retry_after=None), "rate_limited"),
        (LlmEmptyReply(stop_reason="refusal"), "empty_reply"),
        (LlmUpstreamError("x", status=None, retryable=True), "connection"),
        (asyncio.CancelledError(), "cancelled"),
        (RuntimeError("bug"), "other"),
    ],
)
def test_record_generation_names_the_failure(error: BaseException, kind: str) -> None:
    with capture_logs() as logs:
        record_generation(
            duration_seconds=0.0, model="m", success=False, user_id=1, profile_id=2, error=error
        )
    [entry] = logs
    assert entry["error"] == kind
    assert entry["success"] is False
