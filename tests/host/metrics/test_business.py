"""``GET /api/metrics/business`` through the real app: known traffic, exact figures.

Four users act over eleven minutes on the fake clock: they create, update and
read personality profiles and start conversations with a persona answered by a
fake Messages API on loopback. The scenario runs with the real SQLite telemetry
store (``source: store``) and without a store (``source: live``): every figure is
the same (active users come from per-minute sketches of every request, stored or
live).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from accounts import Account, MakeAccount
from digitalme.monitoring.facade import Monitoring
from digitalme.monitoring.telemetry.items import ItemKind
from digitalme.monitoring.telemetry.sampling import Sampler
from digitalme.monitoring.telemetry.sinks import SeriesKey
from digitalme.monitoring.testing import FakeClock, InMemorySink
from digitalme.settings import Role
from fake_anthropic import FakeAnthropic
from host.metrics.times import T0, iso

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

BUSINESS = "/api/metrics/business"
PROFILES = "/api/personality"
CONVERSATIONS = "/api/conversations"
API_KEY = "sk-ant-api03-business-test-key"


@pytest.fixture
def fake_claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def settings_overrides(tmp_path: Path, fake_claude: FakeAnthropic) -> dict[str, Any]:
    return {
        "connection_strings": {"telemetry_store": f"sqlite+aiosqlite:///{tmp_path}/telemetry.db"},
        "security": {"rate_limit_enabled": False},
        "claude": {
            "api_key": API_KEY,
            "base_url": fake_claude.base_url,
            "model": "claude-test-model",
            "timeout": 5.0,
            "max_retries": 0,
        },
    }


async def business(client: httpx.AsyncClient, admin: Account, **params: str) -> dict[str, Any]:
    response = await client.get(BUSINESS, params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class Traffic:
    """Requests through the app at chosen moments of the fake clock."""

    def __init__(self, client: httpx.AsyncClient, monitoring: Monitoring, clock: FakeClock) -> None:
        self.client = client
        self.monitoring = monitoring
        self.clock = clock

    async def at(self, seconds: float) -> None:
        """Fold what was recorded so far into its buckets, then move to T0 + ``seconds``."""
        assert await self.monitoring.pipeline.flush()
        self.clock.advance(T0.timestamp() + seconds - self.clock.time())

    async def send(
        self, account: Account | None, method: str, path: str, status: int, **kwargs: Any
    ) -> Any:
        headers = account.headers if account is not None else {}
        response = await self.client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == status, response.text
        return response.json()


async def generate_traffic(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    monitoring: Monitoring,
    clock: FakeClock,
    fake_claude: FakeAnthropic,
) -> None:
    """The known traffic: see EXPECTED (slices of 5 minutes counted back from 00:11:00)."""
    ada: Account = await make_account(Role.USER)
    bob: Account = await make_account(Role.USER)
    cy: Account = await make_account(Role.USER)
    dee: Account = await make_account(Role.USER)
    traffic = Traffic(client, monitoring, clock)
    send = traffic.send

    # [00:00, 00:01): Ada and Bob create a profile each.
    ada_profile = (await send(ada, "POST", PROFILES, 201, json={"name": "Ada"}))["id"]
    bob_profile = (await send(bob, "POST", PROFILES, 201, json={"name": "Bob"}))["id"]

    # [00:01, 00:06): Ada reads hers and her list, both update theirs; Cy lists (none
    # of his own) and fails to read Bob's (404: active, but no profile was read).
    await traffic.at(60)
    await send(ada, "GET", f"{PROFILES}/{ada_profile}", 200)
    await send(ada, "GET", PROFILES, 200)
    await traffic.at(120)
    await send(ada, "PATCH", f"{PROFILES}/{ada_profile}", 200, json={"data": {"city": "London"}})
    await send(bob, "PUT", f"{PROFILES}/{bob_profile}", 200, json={"name": "Robert"})
    await traffic.at(240)
    assert await send(cy, "GET", PROFILES, 200) == []  # a read, though of nothing
    await send(cy, "GET", f"{PROFILES}/{bob_profile}", 404)

    # [00:06, 00:11): Dee creates a profile; Ada and Dee talk to personas.
    await traffic.at(400)
    dee_profile = (await send(dee, "POST", PROFILES, 201, json={"name": "Dee"}))["id"]
    talk = await send(ada, "POST", CONVERSATIONS, 201, json={"profile_id": ada_profile})
    await traffic.at(500)
    fake_claude.answer("Hello from London.")
    for content in ("Hi", "Where do you live?"):
        await send(ada, "POST", f"{CONVERSATIONS}/{talk['id']}/messages", 201,
                   json={"content": content})  # fmt: skip
    await send(dee, "POST", CONVERSATIONS, 201, json={"profile_id": dee_profile})
    await send(dee, "POST", CONVERSATIONS, 404, json={"profile_id": bob_profile})  # not hers
    await traffic.at(620)
    await send(dee, "GET", f"{PROFILES}/{dee_profile}", 200)
    await send(None, "GET", PROFILES, 401)  # anonymous: no user
    await traffic.at(660)


EXPECTED: dict[str, Any] = {
    # slices [00:00, 00:01): Ada, Bob; [00:01, 00:06): Ada, Bob, Cy; [00:06, 00:11): Ada, Dee
    "active_users": {"current": 2, "peak": 3, "total": 4},
    "personality_profiles": {"created": 3, "updated": 2, "queried": 4},
    # a conversation has no end in the host: nothing completed, no average length
    "conversations": {"started": 2, "completed": None, "average_length": None},
}


async def test_known_traffic_gives_exact_figures(
    client: httpx.AsyncClient,
    admin: Account,
    make_account: MakeAccount,
    monitoring: Monitoring,
    clock: FakeClock,
    fake_claude: FakeAnthropic,
) -> None:
    await generate_traffic(client, make_account, monitoring, clock, fake_claude)

    body = await business(client, admin, start=iso(0), end=iso(660))
    stored = monitoring.store is not None
    assert body["source"] == ("store" if stored else "live")
    assert body["window"] == {"start": iso(0), "end": iso(660)}
    expected = EXPECTED
    assert {key: value for key, value in body.items() if key not in ("window", "source")} == (
        expected
    )
    # the default window, the last hour, holds the same traffic
    last_hour = await business(client, admin)
    assert last_hour["window"] == {"start": iso(660 - 3600), "end": iso(660)}
    assert {key: last_hour[key] for key in expected} == expected


@pytest.mark.parametrize("monitoring", ["store"], indirect=True)
async def test_only_what_the_window_holds_is_counted(
    client: httpx.AsyncClient,
    admin: Account,
    make_account: MakeAccount,
    monitoring: Monitoring,
    clock: FakeClock,
    fake_claude: FakeAnthropic,
) -> None:
    await generate_traffic(client, make_account, monitoring, clock, fake_claude)

    first = await business(client, admin, start=iso(0), end=iso(300))  # one whole slice
    assert first["active_users"] == {"current": 3, "peak": 3, "total": 3}  # Ada, Bob, Cy
    assert first["personality_profiles"] == {"created": 2, "updated": 2, "queried": 3}
    assert first["conversations"]["started"] == 0

    # [00:02, 00:11): slices [00:02, 00:06) (Ada, Bob, Cy) and [00:06, 00:11) (Ada, Dee)
    late = await business(client, admin, start=iso(120), end=iso(660))
    assert late["active_users"] == {"current": 2, "peak": 3, "total": 4}
    assert late["personality_profiles"] == {"created": 1, "updated": 2, "queried": 2}

    # [00:06:40, 00:08:20): Dee's profile and Ada's conversation; the end is exclusive
    short = await business(client, admin, start=iso(400), end=iso(500))
    assert short["active_users"] == {"current": 2, "peak": 2, "total": 2}
    assert short["personality_profiles"] == {"created": 1, "updated": 0, "queried": 0}
    assert short["conversations"] == {"started": 1, "completed": None, "average_length": None}


async def test_a_quiet_window_is_zeros_and_nulls(
    client: httpx.AsyncClient, admin: Account, monitoring: Monitoring
) -> None:
    body = await business(client, admin)
    assert body["active_users"] == {"current": 0, "peak": 0, "total": 0}
    assert body["personality_profiles"] == {"created": 0, "updated": 0, "queried": 0}
    assert body["conversations"] == {"started": 0, "completed": None, "average_length": None}


@pytest.mark.parametrize("monitoring", ["store"], indirect=True)
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"step": "1m"}, "step: unknown parameter"),
        ({"start": "2h", "end": "3h"}, "start: must be before end"),
        ({"start": "yesterday"}, "start: not a timestamp or duration: 'yesterday'"),
    ],
)
async def test_parameters_are_checked(
    client: httpx.AsyncClient, admin: Account, params: dict[str, str], message: str
) -> None:
    response = await client.get(BUSINESS, params=params, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert response.json()["message"] == message


@pytest.mark.parametrize("monitoring", ["live"], indirect=True)
async def test_the_host_records_bounded_metrics(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    monitoring: Monitoring,
    clock: FakeClock,
    fake_claude: FakeAnthropic,
    telemetry_sink: InMemorySink,
) -> None:
    await generate_traffic(client, make_account, monitoring, clock, fake_claude)
    assert await monitoring.pipeline.flush()

    counts: dict[SeriesKey, int] = {}
    for (key, _), bucket in telemetry_sink.buckets.items():
        if key.name.startswith("business."):
            counts[key] = counts.get(key, 0) + bucket.count
    assert counts == {
        SeriesKey("business.profiles", (("action", "created"),)): 3,
        SeriesKey("business.profiles", (("action", "updated"),)): 2,
        SeriesKey("business.profiles", (("action", "queried"),)): 4,
        SeriesKey("business.conversations", (("event", "started"),)): 2,
    }


@pytest.mark.parametrize("monitoring", ["store"], indirect=True)
async def test_active_users_count_requests_that_sampling_left_out(
    client: httpx.AsyncClient,
    admin: Account,
    make_account: MakeAccount,
    monitoring: Monitoring,
    clock: FakeClock,
    fake_claude: FakeAnthropic,
) -> None:
    monitoring.client.sampler = Sampler(0.01, adaptive=False)  # keeps 1 request in 10,000
    await generate_traffic(client, make_account, monitoring, clock, fake_claude)
    assert monitoring.store is not None
    stored = await monitoring.store.query.count_items(ItemKind.REQUEST, 0, T0.timestamp() + 660)
    assert stored <= 2  # of about thirty requests (more than 2 kept: p < 1e-8)
    body = await business(client, admin, start=iso(0), end=iso(660))
    assert body["active_users"] == EXPECTED["active_users"]
