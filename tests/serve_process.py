"""``digitalme serve`` as a real child process, for tests that need the whole program."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from servers import find_free_port

START_TIMEOUT = 30.0  # seconds; a bound for waiting


class ServeProcess:
    """``python -m digitalme serve`` in ``cwd`` with ``env`` added to a clean environment.

    Inherited ``DIGITALME_*`` variables are dropped so the developer's own
    settings never leak in. ``start()`` waits until the API answers; ``kill()``
    is SIGKILL (a crash: nothing is flushed); ``stop()`` is SIGTERM and returns
    the combined output. The output goes to a file in ``cwd``, not a pipe: a pipe
    nobody reads fills up (64 KiB of access log) and blocks the server's writes.
    """

    def __init__(self, cwd: Path, env: dict[str, str], port: int | None = None) -> None:
        self.cwd = cwd
        self.port = port or find_free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("DIGITALME")}
        self._env.update(env)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = cwd / f"serve-{self.port}.log"

    @property
    def output(self) -> str:
        """What the process printed so far (stdout and stderr)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def start(self) -> Self:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "digitalme", "serve", "--port", str(self.port)],
                cwd=self.cwd,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base_url}/health/live", timeout=1)
                return self
            except httpx.TransportError:
                if self.process.poll() is not None:
                    raise AssertionError(f"server exited early:\n{self.output}") from None
                time.sleep(0.1)
        self.kill()
        raise AssertionError(f"server did not start within {START_TIMEOUT:g} s")

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> str:
        """SIGTERM, wait for the graceful shutdown, and return the output."""
        process = self.process
        if process is None or process.returncode is not None:
            return self.output
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return self.output

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
