"""Waiting for a condition in tests that run against real servers and background tasks."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

POLL_INTERVAL = 0.02  # seconds between looks


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float, what: str
) -> None:
    """Return once ``condition()`` is true; fail naming ``what`` after ``timeout`` seconds.

    ``timeout`` is a bound for waiting, never a timing assertion.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(POLL_INTERVAL)
