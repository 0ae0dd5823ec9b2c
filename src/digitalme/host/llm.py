"""The conversation model: Claude through the official Anthropic SDK, behind a small protocol.

Routes depend on :class:`ConversationModel` only, so tests and other hosts can
plug in anything with ``reply`` and ``aclose``. :class:`ClaudeModel` is the real
one. Its failures are typed (:class:`LlmError` and subclasses) and carry what a
caller needs to decide (status, retryable, retry_after) as fields; their
messages are ours, never the upstream body, and never contain the API key.

:func:`record_generation` is the one place that reports a personality
generation; the telemetry layer replaces its body with a metric later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

import structlog

from digitalme.monitoring.clock import Clock, SystemClock
from digitalme.monitoring.telemetry.client import TelemetryClient
from digitalme.monitoring.telemetry.performance import PerformanceMonitor
from digitalme.settings import ClaudeSettings

if TYPE_CHECKING:
    # The SDK takes ~3 s to import (its pydantic types); it is imported when a
    # ClaudeModel is built, so a host without an API key, the CLI and most tests
    # never pay for it.
    import anthropic
    from anthropic.types import MessageParam

__all__ = [
    "DEFAULT_BASE_URL",
    "ChatTurn",
    "ClaudeModel",
    "ConversationModel",
    "LlmEmptyReply",
    "LlmError",
    "LlmRateLimited",
    "LlmTimeout",
    "LlmUpstreamError",
    "ModelStatus",
    "Reply",
    "TurnRole",
    "build_conversation_model",
    "record_generation",
]

# Passed explicitly so that the SDK does not pick a base URL up from the process
# environment (ANTHROPIC_BASE_URL): the settings tree is the only configuration.
DEFAULT_BASE_URL = "https://api.anthropic.com"


class TurnRole(StrEnum):
    """Who said a turn of a conversation."""

    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One turn of a conversation, as sent to the model."""

    role: TurnRole
    content: str


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """What the API says about the configured model (``GET /v1/models/{model}``)."""

    id: str
    display_name: str
    lifecycle: str | None
    """``active``, ``deprecated`` or ``retired`` (None when the API does not say)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What the model answered, with its usage and how long it took."""

    text: str
    model: str
    input_tokens: int
    output_tokens: int
    duration_seconds: float


class LlmError(Exception):
    """Root of the conversation model's errors.

    ``retryable`` says whether the same request may succeed later. ``str()`` is
    a short message of ours: no upstream body, no credentials.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class LlmTimeout(LlmError):
    """The model did not answer within the configured timeout (retries included)."""

    def __init__(self, message: str = "the conversation model timed out") -> None:
        super().__init__(message, retryable=True)


class LlmUpstreamError(LlmError):
    """The model's API failed: an error status (``status``) or no connection (``None``).

    ``error_type`` is Anthropic's machine-readable ``error.type`` (for example
    ``overloaded_error``) and ``upstream_request_id`` its ``request-id`` header,
    for support requests; neither carries free text from the upstream.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        retryable: bool,
        error_type: str | None = None,
        upstream_request_id: str | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.error_type = error_type
        self.upstream_request_id = upstream_request_id


class LlmRateLimited(LlmUpstreamError):
    """The upstream refused for rate limiting (429); ``retry_after`` seconds if it said."""

    def __init__(
        self,
        message: str = "the conversation model is rate limited",
        *,
        retry_after: float | None,
        error_type: str | None = None,
        upstream_request_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            status=429,
            retryable=True,
            error_type=error_type,
            upstream_request_id=upstream_request_id,
        )
        self.retry_after = retry_after


class LlmEmptyReply(LlmUpstreamError):
    """The model answered without any text (``stop_reason`` says why, e.g. ``refusal``)."""

    def __init__(self, *, stop_reason: str | None) -> None:
        super().__init__("the conversation model returned no text", status=None, retryable=False)
        self.stop_reason = stop_reason


class ConversationModel(Protocol):
    """Generates the next assistant turn of a conversation."""

    async def reply(self, *, system: str, turns: Sequence[ChatTurn]) -> Reply:
        """Answer the last user turn of ``turns``, in the persona ``system`` describes.

        Raises :class:`LlmError` (a subclass) on any failure.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the model is not used afterwards."""
        ...


class ClaudeModel:
    """:class:`ConversationModel` backed by Anthropic's Messages API (``anthropic.AsyncAnthropic``).

    The SDK owns retries (``max_retries``, with backoff and ``retry-after``) and the
    per-request ``timeout``; this class maps its exceptions to :class:`LlmError`.
    """

    def __init__(
        self,
        settings: ClaudeSettings,
        *,
        clock: Clock | None = None,
        telemetry: TelemetryClient | None = None,
    ) -> None:
        import anthropic

        from digitalme.monitoring.telemetry.instrumentation.http_client import (
            anthropic_http_client,
        )

        if settings.api_key is None:
            raise ValueError("claude.api_key: required for ClaudeModel")
        self.model = settings.model
        self.base_url = settings.base_url or DEFAULT_BASE_URL
        self._max_tokens = settings.max_tokens
        self._clock = clock or SystemClock()
        self._client = anthropic.AsyncAnthropic(
            api_key=settings.api_key.get_secret_value(),
            base_url=self.base_url,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
            # Instrumented so that every Claude call is a recorded dependency.
            http_client=None
            if telemetry is None
            else anthropic_http_client(telemetry, timeout=settings.timeout, clock=self._clock),
        )

    def __repr__(self) -> str:
        return f"ClaudeModel(model={self.model!r}, base_url={self.base_url!r})"

    async def reply(self, *, system: str, turns: Sequence[ChatTurn]) -> Reply:
        """Send ``system`` and ``turns`` to Claude; concatenate the text blocks of its answer."""
        import anthropic
        from anthropic.types import TextBlock

        started = self._clock.monotonic()
        try:
            message = await self._client.messages.create(
                model=self.model,
                max_tokens=self._max_tokens,
                system=system,
                messages=[_message_param(turn) for turn in turns],
            )
        except anthropic.AnthropicError as exc:
            raise _translate(exc) from None
        text = "".join(block.text for block in message.content if isinstance(block, TextBlock))
        if not text:
            raise LlmEmptyReply(stop_reason=message.stop_reason)
        return Reply(
            text=text,
            model=message.model,
            input_tokens=message.usage.input_tokens,
            output_tokens=message.usage.output_tokens,
            duration_seconds=self._clock.monotonic() - started,
        )

    async def model_status(self, *, timeout: float) -> ModelStatus:
        """Ask the API about the configured model: one cheap real call that proves the
        key, the model and the network path without generating tokens.

        The same client (key, base URL, instrumented HTTP client) as :meth:`reply`,
        without retries: a health probe reports a failure rather than retrying it.
        Raises :class:`LlmError` (a subclass) on any failure.
        """
        import anthropic

        try:
            info = await self._client.with_options(max_retries=0).models.retrieve(
                self.model, timeout=timeout
            )
        except anthropic.AnthropicError as exc:
            raise _translate(exc) from None
        lifecycle = getattr(info, "lifecycle", None)
        return ModelStatus(
            id=info.id,
            display_name=info.display_name,
            lifecycle=lifecycle if isinstance(lifecycle, str) else None,
        )

    async def aclose(self) -> None:
        """Close the SDK's HTTP client."""
        await self._client.close()


def build_conversation_model(
    settings: ClaudeSettings,
    *,
    telemetry: TelemetryClient | None = None,
    clock: Clock | None = None,
) -> ConversationModel | None:
    """The Claude model when an API key is configured, else ``None`` (conversations answer 503).

    With ``telemetry`` its HTTP calls are recorded as dependencies.
    """
    if settings.api_key is None:
        return None
    return ClaudeModel(settings, clock=clock, telemetry=telemetry)


def _message_param(turn: ChatTurn) -> MessageParam:
    if turn.role is TurnRole.USER:
        return {"role": "user", "content": turn.content}
    return {"role": "assistant", "content": turn.content}


def _translate(exc: anthropic.AnthropicError) -> LlmError:
    """The SDK's exception as ours. Upstream text (``exc.message``, ``exc.body``) is dropped."""
    import anthropic

    # APITimeoutError subclasses APIConnectionError: test it first.
    if isinstance(exc, anthropic.APITimeoutError):
        return LlmTimeout()
    if isinstance(exc, anthropic.APIConnectionError):
        return LlmUpstreamError(
            "could not connect to the conversation model", status=None, retryable=True
        )
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        error_type = exc.type if isinstance(exc.type, str) else None
        if status == 429:
            return LlmRateLimited(
                retry_after=_retry_after(exc),
                error_type=error_type,
                upstream_request_id=exc.request_id,
            )
        return LlmUpstreamError(
            f"the conversation model answered HTTP {status}",
            status=status,
            retryable=status in (408, 409) or status >= 500,
            error_type=error_type,
            upstream_request_id=exc.request_id,
        )
    if isinstance(exc, anthropic.APIResponseValidationError):
        return LlmUpstreamError(
            "the conversation model sent an invalid response",
            status=exc.status_code,
            retryable=False,
        )
    return LlmUpstreamError(
        f"the conversation model client failed ({type(exc).__name__})",
        status=None,
        retryable=False,
    )


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        return max(seconds, 0.0)
    return None


def record_generation(
    *,
    duration_seconds: float,
    model: str,
    success: bool,
    user_id: int,
    profile_id: int,
    error: BaseException | None = None,
    performance: PerformanceMonitor | None = None,
) -> None:
    """Report one personality generation (a model call for a conversation), success or failure.

    One structured log line ``personality_generation``, and the plan's
    personality-generation telemetry through ``performance`` (duration, success,
    slow responses). Callers call it exactly once per generation; ``error`` is what
    ended a failed one (usually an :class:`LlmError`, or ``asyncio.CancelledError``
    when the client went away).
    """
    if performance is not None:
        performance.record_personality_generation(
            duration_seconds, success, model, user_id, profile_id
        )
    # Resolved per call (generations are rare) so that logging configured later,
    # or structlog.testing.capture_logs, is honoured despite logger caching.
    logger = structlog.get_logger("digitalme.host.llm")
    fields: dict[str, object] = {
        "duration_ms": round(duration_seconds * 1000.0, 3),
        "model": model,
        "success": success,
        "user_id": user_id,
        "profile_id": profile_id,
    }
    if error is None:
        logger.info("personality_generation", **fields)
        return
    fields["error"] = _error_kind(error)
    if isinstance(error, LlmUpstreamError):
        fields["upstream_status"] = error.status
        fields["upstream_error_type"] = error.error_type
        fields["upstream_request_id"] = error.upstream_request_id
    logger.warning("personality_generation", **fields)


def _error_kind(error: BaseException) -> str:
    """A bounded name for the failure, fit for a metric dimension."""
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, LlmTimeout):
        return "timeout"
    if isinstance(error, LlmRateLimited):
        return "rate_limited"
    if isinstance(error, LlmEmptyReply):
        return "empty_reply"
    if isinstance(error, LlmUpstreamError):
        return "connection" if error.status is None else "upstream_status"
    return "other"
