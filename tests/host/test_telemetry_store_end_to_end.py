"""Traffic through the whole app lands in the real telemetry store with exact counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from accounts import MakeAccount
from conftest_servers import BACKENDS, backend_url
from digitalme.app import create_app
from digitalme.host.migrate import upgrade_async
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.storage import upgrade_async as upgrade_store
from digitalme.monitoring.telemetry.items import ItemKind
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import Role, Settings, load_settings


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, str(tmp_path / "telemetry.db"))


@pytest.fixture
def configured(settings: Settings, store_url: str) -> Settings:
    return load_settings(
        **{
            **settings.model_dump(mode="python"),
            "connection_strings": {
                "database": settings.database_url,
                "telemetry_store": store_url,
            },
            "telemetry": {"sampling_percentage": 50, "enable_adaptive_sampling": False},
            "security": {"rate_limit_enabled": False},
        }
    )


@pytest.fixture
def stored_monitoring(configured: Settings, clock: FakeClock) -> Monitoring:
    return Monitoring.from_settings(configured, clock=clock, version="e2e")


@pytest.fixture
async def stored_app(
    configured: Settings, clock: FakeClock, stored_monitoring: Monitoring, store_url: str
) -> AsyncIterator[FastAPI]:
    await upgrade_async(configured.database_url)
    await upgrade_store(store_url)
    application = create_app(configured, clock=clock, monitoring=stored_monitoring)
    async with application.router.lifespan_context(application):
        yield application


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_500_requests_25_failed_are_counted_exactly(
    stored_app: FastAPI, stored_monitoring: Monitoring, make_account: MakeAccount, clock: FakeClock
) -> None:
    account = await make_account(Role.USER)
    transport = httpx.ASGITransport(app=stored_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for n in range(500):
            path = "/api/personality/999999" if n < 25 else "/api/personality"
            await http.get(path, headers=account.headers)
    assert await stored_monitoring.pipeline.flush()
    store = stored_monitoring.store
    assert store is not None
    start, end = clock.time() - 3600, clock.time() + 3600

    # Items are sampled at 50 %, with weight 2: weighted counts estimate the totals,
    # and the metric buckets, aggregated before sampling, are exact.
    weighted = await store.query.count_items(ItemKind.REQUEST, start, end)
    assert 350 <= weighted <= 650
    stored = await store.query.recent(ItemKind.REQUEST, 1000)
    assert {row["weight"] for row in stored} == {2.0}

    groups = {
        dims["success"]: bucket.count
        for dims, bucket in await store.query.metric_window(
            "http.server.duration", start, end, group_by=["success"]
        )
    }
    assert groups == {"true": 475, "false": 25}
    error_rate = groups["false"] / (groups["true"] + groups["false"])
    assert error_rate == pytest.approx(0.05)
