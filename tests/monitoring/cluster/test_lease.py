"""The alerting lease on SQLite and PostgreSQL: one holder, takeover after expiry, fencing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from digitalme.monitoring.cluster.leadership import Leadership
from digitalme.monitoring.cluster.lease import Lease, LeaseLost
from digitalme.monitoring.storage import TelemetryStore, schema
from digitalme.monitoring.testing import FakeClock


def lease(store: TelemetryStore, holder: str, clock: FakeClock, ttl: float = 10.0) -> Lease:
    return Lease(store.engine, "alerting", holder, ttl=ttl, clock=clock)


async def test_one_holder_at_a_time_and_takeover_after_expiry(
    store: TelemetryStore, clock: FakeClock
) -> None:
    a, b = lease(store, "a", clock), lease(store, "b", clock)
    assert await a.acquire()
    assert a.token == 1
    assert a.held()
    assert not await b.acquire()
    assert b.state is not None
    assert b.state.holder == "a"
    assert not b.held()

    clock.advance(5)
    assert await a.acquire()  # a renewal keeps the token
    assert a.token == 1
    clock.advance(9.9)
    assert not await b.acquire()  # renewed 9.9 s ago: not expired yet

    clock.advance(0.2)
    assert not a.held()  # a stopped acting before b could take over
    assert await b.acquire()
    assert b.token == 2
    assert not await a.acquire()
    assert a.token is None
    assert not a.held()


async def test_the_holder_stops_acting_before_the_lease_expires(
    store: TelemetryStore, clock: FakeClock
) -> None:
    a = lease(store, "a", clock, ttl=10)
    await a.acquire()
    clock.advance(7.9)
    assert a.held()
    clock.advance(0.2)  # 8.1 s: inside the 20 % kept for clocks that disagree
    assert not a.held()
    assert a.valid_for == 0.0


async def test_release_hands_over_at_once(store: TelemetryStore, clock: FakeClock) -> None:
    a, b = lease(store, "a", clock), lease(store, "b", clock)
    await a.acquire()
    await a.release()
    assert not a.held()
    assert await b.acquire()
    assert b.token == 2


async def test_fence_refuses_a_deposed_holder_and_rolls_back(
    store: TelemetryStore, clock: FakeClock
) -> None:
    a, b = lease(store, "a", clock), lease(store, "b", clock)
    await a.acquire()
    async with store.engine.begin() as connection:
        await a.fence(connection)  # the holder passes

    # a is paused past its lease; b takes over; a's clock has not noticed (still "held")
    paused = FakeClock()
    stale = Lease(store.engine, "alerting", "a", ttl=10, clock=paused)
    await stale.acquire()  # renews a's own lease: token 1 (nobody took it yet)
    clock.advance(11)
    assert await b.acquire()
    assert stale.held()  # its own clock did not move
    table = schema.deployments
    row = {"id": "d1", "version": "1", "deployed_by": "x", "at": 0.0, "description": ""}

    async def write_then_fence() -> None:
        async with store.engine.begin() as connection:
            await connection.execute(table.insert().values(**row))
            await stale.fence(connection)

    with pytest.raises(LeaseLost):
        await write_then_fence()
    assert not stale.held()
    async with store.engine.connect() as connection:
        rows = (await connection.execute(select(table.c.id))).all()
    assert rows == []  # the write before the fence was rolled back with it


async def test_leadership_starts_and_stops_the_leaders_work(
    store: TelemetryStore, clock: FakeClock
) -> None:
    happened: list[str] = []

    async def elected() -> None:
        happened.append("elected")

    async def demoted() -> None:
        happened.append("demoted")

    a = Leadership(lease(store, "a", clock), on_elected=elected, on_demoted=demoted, strict=True)
    b_events: list[str] = []

    async def b_elected() -> None:
        b_events.append("elected")

    async def b_demoted() -> None:
        b_events.append("demoted")

    b = Leadership(
        lease(store, "b", clock), on_elected=b_elected, on_demoted=b_demoted, strict=True
    )
    await a.step()
    await b.step()
    assert a.leading
    assert not b.leading
    assert happened == ["elected"]
    assert b_events == []

    clock.advance(8.5)  # a's renewals were lost (say): it steps down on its own
    await a_step_without_store(a)
    assert happened == ["elected", "demoted"]
    clock.advance(2)
    await b.step()
    assert b.leading
    assert b_events == ["elected"]
    await b.stop()
    assert b_events == ["elected", "demoted"]
    await a.step()  # released: a takes over without waiting for the lease to expire
    assert a.leading
    assert a.lease.token == 3
    await a.stop()


async def a_step_without_store(leadership: Leadership) -> None:
    """A step whose renewal fails (the database is unreachable)."""

    async def failing() -> bool:
        raise ConnectionError("unreachable")

    working = leadership.lease.acquire
    leadership.lease.acquire = failing  # type: ignore[method-assign]
    leadership.strict = False
    try:
        await leadership.step()
    finally:
        leadership.lease.acquire = working  # type: ignore[method-assign]
        leadership.strict = True
    assert leadership.errors == 1
