"""Headless Chromium for the dashboard's tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download is never used (the machine has no route to
it): the tests launch the system's Chromium by path, ``$CHROMIUM`` or
``/usr/bin/chromium`` (``.ci/run`` installs Debian's package). Without it the
tests skip, except on CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright

from conftest_servers import missing_binary
from servers import ServerBinaryNotFound

# The flags a sandboxed, offline machine needs: no background calls to Google's
# services (refused here, and noisy), no GPU, no first-run UI. Root needs --no-sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> Path:
    """The system Chromium; skips (fails on CI) when there is none."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    path = Path(found)
    if not path.exists():
        missing_binary(ServerBinaryNotFound("chromium", [str(path)]))
    return path


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


class ConsoleTab:
    """A browser tab on ``base_url``; ``errors`` keeps what its console reports as an error
    or warning, and uncaught page errors (the page tests assert there are none)."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"{message.type}: {message.text}")
