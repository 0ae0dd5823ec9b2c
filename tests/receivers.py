"""Real receivers on 127.0.0.1 for the notification channels' tests.

* :class:`HttpReceiver`: an HTTP server standing in for Slack, Twilio and
  webhook receivers. It records every request (method, path, headers, body)
  before answering, and answers from a script (``script(Reply(500), times=3)``)
  and then from its ``responder`` (by default ``200 ok``).
* :func:`twilio_responder`: a responder that speaks Twilio's Messages API
  (basic auth, form fields, JSON errors with ``code`` and ``message``).
* :class:`SmtpReceiver`: an aiosmtpd server, plain, with STARTTLS or with
  implicit TLS, optionally requiring AUTH LOGIN/PLAIN, that keeps the messages
  it accepts and can be told to refuse recipients or the message.
* :class:`TestCertificates`: a throwaway CA (trustme) and a server certificate
  for 127.0.0.1 and localhost.

Both servers run in a background thread of their own, so they serve while a
test's event loop waits on the client; ``stop()`` joins the thread. Everything
is in-process, so none of these tests ever needs to be skipped.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import ssl
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from loopback import LoopbackHttp, LoopbackServer
from servers import find_free_port

__all__ = [
    "HttpReceiver",
    "ReceivedMail",
    "ReceivedRequest",
    "Reply",
    "SmtpReceiver",
    "TestCertificates",
    "twilio_responder",
]


# -- HTTP -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the HTTP receiver got. Header names are lowercase."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """The body as ``application/x-www-form-urlencoded`` fields."""
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True, strict_parsing=True))

    def basic_auth(self) -> tuple[str, str] | None:
        """``(user, password)`` from an ``Authorization: Basic`` header, if any."""
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user, password


@dataclass(frozen=True)
class Reply:
    """What the HTTP receiver answers; ``delay`` holds the answer back (seconds)."""

    status: int = 200
    body: bytes = b"ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def json(cls, status: int, payload: object, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(
            status,
            json.dumps(payload).encode(),
            {"content-type": "application/json", **(headers or {})},
        )


Responder = Callable[[ReceivedRequest], Reply]


class _HttpHandler(BaseHTTPRequestHandler):
    server: LoopbackServer
    # HTTP/1.0: one request per connection, so no handler thread idles on a
    # kept-alive socket and server_close() never waits for a client to hang up.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request logs are noise in pytest's captured output."""

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        request = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers={key.lower(): value for key, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        receiver: HttpReceiver = self.server.owner
        reply = receiver._reply_for(request)
        if reply.delay and receiver.stopping.wait(reply.delay):
            return  # shutting down: drop the request unanswered
        try:
            try:
                phrase = HTTPStatus(reply.status).phrase
            except ValueError:
                phrase = "Unknown"
            self.send_response(reply.status, phrase)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout fired)

    do_POST = do_GET = do_PUT = _handle


class HttpReceiver(LoopbackHttp):
    """An HTTP server on ``127.0.0.1:<free port>`` that records and answers as told."""

    handler = _HttpHandler
    thread_name = "http-receiver"

    def __init__(self, responder: Responder | None = None) -> None:
        super().__init__()
        self.responder: Responder = responder or (lambda request: Reply())
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._requests: list[ReceivedRequest] = []

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, reply: Reply, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``reply`` (after earlier scripted ones)."""
        with self._lock:
            self._script.extend([reply] * times)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def _reply_for(self, request: ReceivedRequest) -> Reply:
        with self._lock:
            self._requests.append(request)
            scripted = self._script.popleft() if self._script else None
        return scripted if scripted is not None else self.responder(request)


def twilio_responder(account_sid: str, auth_token: str) -> Responder:
    """Twilio's Messages API as far as the SMS channel uses it.

    Wrong credentials get 401 (error 20003); a missing field 400 (21604 for To,
    21603 for From, 21602 for Body); the magic test number ``+15005550001`` a
    400 "not a valid phone number" (21211) as on Twilio's test credentials;
    anything else 201 with a message SID.
    """
    path = f"/2010-04-01/Accounts/{account_sid}/Messages.json"
    counter = iter(range(1, 1_000_000))

    def error(status: int, code: int, message: str) -> Reply:
        return Reply.json(
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
        )

    def respond(request: ReceivedRequest) -> Reply:
        if request.method != "POST" or request.path != path:
            return error(404, 20404, "The requested resource was not found")
        if request.basic_auth() != (account_sid, auth_token):
            return error(401, 20003, "Authenticate")
        form = request.form()
        for name, code in (("To", 21604), ("From", 21603), ("Body", 21602)):
            if not form.get(name):
                return error(400, code, f"A '{name}' parameter is required.")
        if form["To"] == "+15005550001":
            return error(400, 21211, f"The 'To' number {form['To']} is not a valid phone number.")
        sid = f"SM{next(counter):032x}"
        return Reply.json(
            201, {"sid": sid, "status": "queued", "to": form["To"], "body": form["Body"]}
        )

    return respond


# -- TLS --------------------------------------------------------------------------


class TestCertificates:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, directory: Path) -> None:
        self._ca = trustme.CA()
        self._server_cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = directory / "test-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context


# -- SMTP -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    """One message the SMTP receiver accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    encrypted: bool
    authenticated_as: str | None

    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _SmtpHandler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self._receiver = receiver

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._receiver.refused_recipients.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        receiver = self._receiver
        if receiver.data_reply is not None:
            return receiver.data_reply
        transport = server.transport
        login = session.auth_data if session.authenticated else None
        assert isinstance(envelope.content, bytes)
        receiver._record(
            ReceivedMail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=envelope.content,
                encrypted=transport is not None
                and transport.get_extra_info("ssl_object") is not None,
                authenticated_as=login,
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class _Controller(Controller):
    def factory(self) -> SMTP:
        server = SMTP(self.handler, **self.SMTP_kwargs)  # what Controller.factory does
        if self.ssl_context is not None:
            # Implicit TLS: the connection is encrypted from the first byte, but
            # aiosmtpd only knows about STARTTLS and would refuse AUTH over it.
            server._auth_require_tls = False
        return server


class SmtpReceiver:
    """An aiosmtpd server on ``127.0.0.1:<free port>``.

    ``security``: ``none`` (plain), ``starttls`` (STARTTLS offered and required
    before MAIL) or ``tls`` (implicit TLS); the last two need ``certificates``.
    With ``credentials`` AUTH LOGIN/PLAIN is required, and only offered over TLS.
    ``refused_recipients`` maps an address to the reply refusing it
    (``"550 5.1.1 no such user"``); ``data_reply``, when set, answers DATA
    instead of accepting the message (``"451 4.3.0 try later"``). ``port`` picks
    the port (a free one by default), so a test can start a server where a client
    has been failing to connect.
    """

    def __init__(
        self,
        *,
        security: Literal["none", "starttls", "tls"] = "none",
        certificates: TestCertificates | None = None,
        credentials: tuple[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        if security != "none" and certificates is None:
            raise ValueError(f"security={security!r} needs certificates")
        self.security = security
        self._certificates = certificates
        self._credentials = credentials
        self.refused_recipients: dict[str, str] = {}
        self.data_reply: str | None = None
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._controller: Controller | None = None
        self._port = port
        self.port = 0

    def start(self) -> Self:
        self.port = self._port or find_free_port()
        options: dict[str, Any] = {}
        if self._certificates is not None and self.security == "tls":
            options["ssl_context"] = self._certificates.server_context()
        if self._certificates is not None and self.security == "starttls":
            options["tls_context"] = self._certificates.server_context()
            options["require_starttls"] = True
        if self._credentials is not None:
            options["authenticator"] = self._authenticate
            options["auth_required"] = True
        controller = _Controller(
            _SmtpHandler(self),
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="localhost",  # not getfqdn(), which may wait on DNS
            **options,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    def _record(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._messages.append(mail)

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        presented = (
            (auth_data.login.decode(), auth_data.password.decode())
            if isinstance(auth_data, LoginPassword)
            else None
        )
        success = presented == self._credentials
        login = presented[0] if success and presented is not None else None
        return AuthResult(success=success, handled=False, auth_data=login)
