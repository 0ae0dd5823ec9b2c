"""A threaded HTTP server on ``127.0.0.1:<free port>`` for the fake receivers of the tests.

Subclasses give the request handler class; the server keeps a reference to the
owning object (``server.owner``) so handlers can reach its state. ``stopping``
is set before shutdown, so a handler holding a request (a slow receiver)
returns at once and every thread is joined.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self


class LoopbackServer(ThreadingHTTPServer):
    # Handler threads are joined by server_close(), so nothing outlives a test.
    daemon_threads = False
    block_on_close = True
    owner: Any


class LoopbackHttp:
    """Start / stop / context manager for a :class:`LoopbackServer` in a background thread."""

    handler: ClassVar[type[BaseHTTPRequestHandler]]
    thread_name: ClassVar[str] = "loopback-http"

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind a free loopback port and serve in a background thread."""
        server = LoopbackServer(("127.0.0.1", 0), self.handler)
        server.owner = self
        self._server = server
        self.stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.thread_name
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release held requests, stop serving, close the socket and join every thread."""
        self.stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

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
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])
