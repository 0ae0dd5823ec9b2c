"""The web dashboard on the host's app: served at /dashboard, signing in through the host's
login route, and gone when ``dashboard.page_enabled`` is off."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_the_page_is_public_and_its_data_is_not(client: httpx.AsyncClient) -> None:
    page = await client.get("/dashboard")
    assert page.status_code == 200
    assert 'data-sign-in="/api/auth/login"' in page.text
    assert (await client.get("/dashboard/static/js/main.js")).status_code == 200
    # the sign-in form is all an anonymous caller gets: the figures need an admin
    assert (await client.get("/api/metrics/dashboard")).status_code == 401
    assert (await client.get("/api/alerts")).status_code == 401


@pytest.mark.parametrize("settings_overrides", [{"dashboard": {"page_enabled": False}}])
async def test_the_page_can_be_turned_off(
    client: httpx.AsyncClient, settings_overrides: dict[str, Any]
) -> None:
    assert (await client.get("/dashboard")).status_code == 404
    assert (await client.get("/dashboard/static/js/main.js")).status_code == 404
