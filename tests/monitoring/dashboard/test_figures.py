"""Host figures: a registered source is read; a missing, failing or hanging one is None."""

from __future__ import annotations

import asyncio

from digitalme.monitoring.dashboard.figures import Figures, HostFigures


async def test_a_registered_source_is_read() -> None:
    figures = HostFigures()

    async def pool() -> Figures:
        return {"in_use": 3, "size": 10}

    figures.register("database.pool", pool)
    assert await figures.read("database.pool") == {"in_use": 3, "size": 10}
    assert figures.names() == ["database.pool"]


async def test_nothing_is_invented_for_a_missing_failing_or_hanging_source() -> None:
    figures = HostFigures(timeout=0.05)
    calls = 0

    async def failing() -> Figures:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database down")
        return {"active": 2}

    async def hanging() -> Figures:
        await asyncio.Event().wait()
        return {}

    figures.register("api_keys", failing)
    figures.register("users", hanging)
    assert await figures.read("nobody.registered.this") is None
    assert await figures.read("api_keys") is None
    assert await figures.read("api_keys") == {"active": 2}  # recovered
    assert await figures.read("users") is None  # cut at the timeout
