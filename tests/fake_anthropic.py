"""A real HTTP server on loopback that speaks enough of Anthropic's Messages API.

The official SDK is pointed at it (``base_url``) and talks to it over a real
socket, so tests exercise the SDK's request building, response parsing, error
classes and timeouts exactly as production does.

Usage::

    with FakeAnthropic(api_key="sk-test") as fake:
        fake.answer("Hello!")             # the default mode
        fake.slow(5.0)                    # hold every request 5 s (for client timeouts)
        fake.fail(529)                    # answer every request with an error status
        ...
        fake.requests[-1].body["system"]  # what the SDK sent

``POST /v1/messages`` and ``GET /v1/models/{model_id}`` (what the health check
calls) exist; anything else is a 404 with an Anthropic error body. The modes
(``slow``, ``fail``) apply to both. A wrong or missing API key (``x-api-key``, or
``Authorization: Bearer`` which is what anthropic 2.x sends) gets 401 like the
real API. ``model_lifecycle`` sets what the models endpoint says (``active``,
``deprecated``, ``retired``).
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from loopback import LoopbackHttp, LoopbackServer

__all__ = ["ERROR_TYPES", "FakeAnthropic", "RecordedRequest"]

# Anthropic's documented error types per status.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

# A body that looks like an upstream leak: tests assert it never reaches a client.
UPSTREAM_SECRET_DETAIL = "upstream-internal-detail-7f3a"
MODELS_PATH = "/v1/models/"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class _Mode:
    kind: str = "answer"  # "answer" | "slow" | "fail"
    text: str = "Hello from the fake Claude."
    blocks: list[str] | None = None
    delay: float = 0.0
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackServer
    # HTTP/1.0: one request per connection, so no handler thread idles on a
    # kept-alive socket and server_close() never waits for a client to hang up.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest captures stderr, and request logs are noise there."""

    def do_POST(self) -> None:
        fake: FakeAnthropic = self.server.owner
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_unparsable": raw.decode(errors="replace")}
        fake._record(
            RecordedRequest(
                method="POST",
                path=self.path,
                headers={key.lower(): value for key, value in self.headers.items()},
                body=body if isinstance(body, dict) else {"_json": body},
            )
        )
        if self.path.split("?", 1)[0] != "/v1/messages":
            self._error(404, "not found")
            return
        if self._presented_key() != fake.api_key:
            self._error(401, "invalid x-api-key")
            return
        mode = fake._mode_now()
        if mode.kind == "slow" and fake.stopping.wait(mode.delay):
            return  # the server is shutting down: drop the request
        if mode.kind == "fail":
            self._error(mode.status, UPSTREAM_SECRET_DETAIL, mode.headers)
            return
        blocks = mode.blocks if mode.blocks is not None else [mode.text]
        self._send(
            200,
            {
                "id": f"msg_fake_{next(fake._ids)}",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": text} for text in blocks],
                "model": body.get("model", "claude-fake"),
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 42, "output_tokens": 7},
            },
        )

    def _presented_key(self) -> str | None:
        # anthropic 2.x sends the API key as "Authorization: Bearer"; 0.x sent
        # "x-api-key". The real API accepts both, so the fake does too.
        key = self.headers.get("x-api-key")
        if key is not None:
            return key
        scheme, _, token = (self.headers.get("authorization") or "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    def do_GET(self) -> None:
        fake: FakeAnthropic = self.server.owner
        fake._record(
            RecordedRequest(
                method="GET",
                path=self.path,
                headers={key.lower(): value for key, value in self.headers.items()},
                body={},
            )
        )
        path = self.path.split("?", 1)[0]
        if not path.startswith(MODELS_PATH):
            self._error(404, "not found")
            return
        if self._presented_key() != fake.api_key:
            self._error(401, "invalid x-api-key")
            return
        mode = fake._mode_now()
        if mode.kind == "slow" and fake.stopping.wait(mode.delay):
            return
        if mode.kind == "fail":
            self._error(mode.status, UPSTREAM_SECRET_DETAIL, mode.headers)
            return
        model_id = path.removeprefix(MODELS_PATH)
        self._send(
            200,
            {
                "type": "model",
                "id": model_id,
                "display_name": f"Fake {model_id}",
                "created_at": "2025-01-01T00:00:00Z",
                "lifecycle": fake.model_lifecycle,
            },
        )

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        payload = {
            "type": "error",
            "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
            "request_id": "req_fake",
        }
        self._send(status, payload, headers)

    def _send(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "Overloaded" if status == 529 else "Error"
            self.send_response(status, reason)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", "req_fake")
            extra = {key.lower(): value for key, value in (headers or {}).items()}
            if "retry-after" not in extra and "retry-after-ms" not in extra:
                # Tests decide about retries with max_retries; keep the SDK's wait at 1 ms
                # (0 would make it fall back to its own exponential backoff).
                extra["retry-after-ms"] = "1"
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired): that is the scenario under test.
            self.close_connection = True


class FakeAnthropic(LoopbackHttp):
    """An Anthropic-compatible Messages endpoint on ``127.0.0.1:<free port>``."""

    handler = _Handler
    thread_name = "fake-anthropic"

    def __init__(self, api_key: str = "sk-ant-test-fake-key") -> None:
        super().__init__()
        self.api_key = api_key
        self._lock = threading.Lock()
        self._mode = _Mode()
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self.model_lifecycle = "active"

    @property
    def base_url(self) -> str:
        """The URL to give the SDK as ``base_url``."""
        return f"http://127.0.0.1:{self.port}"

    # -- behaviour ----------------------------------------------------------

    def answer(self, text: str = "Hello from the fake Claude.", *blocks: str) -> None:
        """Answer every request with ``text`` (plus further text ``blocks``)."""
        with self._lock:
            self._mode = _Mode(kind="answer", text=text, blocks=[text, *blocks])

    def slow(self, seconds: float) -> None:
        """Hold every request ``seconds`` before answering (or until stop())."""
        with self._lock:
            self._mode = _Mode(kind="slow", delay=seconds)

    def fail(self, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer every request with ``status`` and an Anthropic error JSON body."""
        with self._lock:
            self._mode = _Mode(kind="fail", status=status, headers=dict(headers or {}))

    def reset(self) -> None:
        """Back to the default answer, with no recorded requests."""
        with self._lock:
            self._mode = _Mode()
            self._requests.clear()
            self.model_lifecycle = "active"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def model_requests(self) -> list[RecordedRequest]:
        """The ``GET /v1/models/{id}`` requests received so far (health probes)."""
        return [r for r in self.requests if r.method == "GET" and r.path.startswith(MODELS_PATH)]

    # -- used by the handler ------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _mode_now(self) -> _Mode:
        with self._lock:
            return self._mode
