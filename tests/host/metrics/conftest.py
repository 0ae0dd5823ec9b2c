"""Fixtures of the metrics API tests: every test runs on the real store and on live aggregates."""

from __future__ import annotations

import pytest

from accounts import Account, MakeAccount
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.storage import upgrade_async as upgrade_store
from digitalme.monitoring.testing import FakeClock, InMemorySink
from digitalme.settings import Role, Settings


@pytest.fixture(params=["store", "live"])
async def monitoring(
    request: pytest.FixtureRequest,
    settings: Settings,
    clock: FakeClock,
    telemetry_sink: InMemorySink,
) -> Monitoring:
    """``store``: the real SQLite telemetry store; ``live``: no store, live aggregates only."""
    if request.param == "live":
        return Monitoring(
            settings, clock=clock, sinks=[telemetry_sink], version="test", strict=True
        )
    await upgrade_store(settings.telemetry_store_url)
    return Monitoring.from_settings(settings, clock=clock, version="test")


@pytest.fixture
async def admin(make_account: MakeAccount) -> Account:
    account: Account = await make_account(Role.ADMIN)
    return account
