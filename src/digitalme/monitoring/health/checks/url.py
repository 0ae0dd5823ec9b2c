"""URL checks: an HTTP GET that must answer an expected status within a timeout.

Operators list the services DigitalMe depends on in ``health.urls``. Redirects
are not followed (a 301 may be the expected status). The URL itself never
appears in results, since it may carry credentials or tokens; the check's name
identifies it.
"""

from __future__ import annotations

import httpx

from digitalme.monitoring.health.model import CheckFailed, HealthResult

__all__ = ["UrlCheck"]


class UrlCheck:
    """GETs ``url`` and expects ``expected_status``."""

    def __init__(self, name: str, url: str, *, expected_status: int, timeout: float) -> None:
        self.name = name
        self._url = url
        self._expected = expected_status
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def check(self) -> HealthResult:
        # Opened on first use (and again after aclose), so a restarted service reuses the check.
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        try:
            response = await self._client.get(self._url)
        except httpx.HTTPError as exc:
            raise CheckFailed("request failed", {"expected_status": self._expected}) from exc
        data = {"status_code": response.status_code, "expected_status": self._expected}
        if response.status_code != self._expected:
            raise CheckFailed(f"answered HTTP {response.status_code}", data)
        return HealthResult.healthy(f"answered HTTP {response.status_code}", data)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
