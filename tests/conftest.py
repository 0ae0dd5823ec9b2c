"""Fixtures every test folder shares: real servers (conftest_servers) and the fake clock."""

from __future__ import annotations

import pytest

from digitalme.monitoring.testing import FakeClock

pytest_plugins = ["conftest_servers"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
