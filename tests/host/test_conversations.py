"""Conversations through the real Anthropic SDK, talking to a fake Messages API on loopback."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from structlog.testing import capture_logs

from digitalme.app import create_app
from digitalme.host.conversations import (
    MAX_HISTORY_CHARS,
    MAX_PROFILE_PROMPT_CHARS,
    build_system_prompt,
    history_turns,
)
from digitalme.host.llm import ChatTurn, Reply, TurnRole
from digitalme.host.models import Message
from digitalme.monitoring.testing import FakeClock
from digitalme.settings import Role, Settings
from fake_anthropic import UPSTREAM_SECRET_DETAIL, FakeAnthropic

# The make_account fixture (tests/host/conftest.py) builds accounts with .id and .headers.
MakeAccount = Callable[..., Awaitable[Any]]
Account = Any

API_KEY = "sk-ant-api03-conversation-test-key"
ERROR_KEYS = {"error", "message", "request_id"}


@pytest.fixture
def fake_claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def settings_overrides(fake_claude: FakeAnthropic) -> dict[str, Any]:
    return {
        "claude": {
            "api_key": API_KEY,
            "base_url": fake_claude.base_url,
            "model": "claude-test-model",
            "timeout": 0.5,
            "max_retries": 0,
        }
    }


async def create_profile(
    client: httpx.AsyncClient, account: Account, name: str = "Ada", data: Any = None
) -> int:
    response = await client.post(
        "/api/personality",
        json={"name": name, "data": data if data is not None else {"hobby": "chess"}},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    profile_id: int = response.json()["id"]
    return profile_id


async def start_conversation(
    client: httpx.AsyncClient, account: Account, profile_id: int, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/conversations", json={"profile_id": profile_id, **extra}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def message_rows(app: FastAPI) -> int:
    async with app.state.host.database.sessions() as session:
        count: int = await session.scalar(select(func.count()).select_from(Message))
        return count


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_KEYS
    assert body["error"] == code
    return body


async def test_full_conversation_flow(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    fake_claude: FakeAnthropic,
    clock: FakeClock,
) -> None:
    user = await make_account()
    profile_id = await create_profile(client, user, "Ada", {"hobby": "chess", "city": "London"})
    conversation = await start_conversation(client, user, profile_id)
    assert conversation["title"] == "Ada"
    assert conversation["owner_id"] == user.id
    path = f"/api/conversations/{conversation['id']}"

    fake_claude.answer("Hello! I was just ", "playing chess.")
    with capture_logs() as logs:
        clock.advance(5)
        first = await client.post(f"{path}/messages", json={"content": "Hi"}, headers=user.headers)
    assert first.status_code == 201, first.text
    exchange = first.json()
    assert exchange["user_message"]["role"] == "user"
    assert exchange["user_message"]["content"] == "Hi"
    assert exchange["assistant_message"]["role"] == "assistant"
    assert exchange["assistant_message"]["content"] == "Hello! I was just playing chess."
    assert exchange["assistant_message"]["model"] == "claude-test-model"
    assert exchange["assistant_message"]["input_tokens"] == 42
    assert exchange["assistant_message"]["output_tokens"] == 7
    [generation] = [entry for entry in logs if entry["event"] == "personality_generation"]
    assert generation["success"] is True
    assert generation["user_id"] == user.id
    assert generation["profile_id"] == profile_id
    assert generation["model"] == "claude-test-model"

    fake_claude.answer("Very well, thank you.")
    second = await client.post(
        f"{path}/messages", json={"content": "How are you?"}, headers=user.headers
    )
    assert second.status_code == 201, second.text

    # What Claude was sent: the persona in the system prompt, and the history.
    first_request, second_request = fake_claude.requests
    system = second_request.body["system"]
    assert "Ada" in system
    assert '"hobby": "chess"' in system
    assert '"city": "London"' in system
    assert first_request.body["messages"] == [{"role": "user", "content": "Hi"}]
    assert second_request.body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! I was just playing chess."},
        {"role": "user", "content": "How are you?"},
    ]
    assert second_request.body["model"] == "claude-test-model"

    detail = await client.get(path, headers=user.headers)
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert body["message_count"] == 4
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "Hi"),
        ("assistant", "Hello! I was just playing chess."),
        ("user", "How are you?"),
        ("assistant", "Very well, thank you."),
    ]
    assert body["updated_at"] > conversation["updated_at"]
    assert await message_rows(app) == 4


async def test_title_can_be_given(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    user = await make_account()
    profile_id = await create_profile(client, user)
    conversation = await start_conversation(client, user, profile_id, title="Chess talk")
    assert conversation["title"] == "Chess talk"


async def test_list_shows_own_conversations_and_admins_see_all(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    alice, bob, admin = await make_account(), await make_account(), await make_account(Role.ADMIN)
    alice_conv = await start_conversation(client, alice, await create_profile(client, alice))
    bob_profile = await create_profile(client, bob)
    bob_conv = await start_conversation(client, bob, bob_profile)

    mine = await client.get("/api/conversations", headers=alice.headers)
    assert [c["id"] for c in mine.json()] == [alice_conv["id"]]
    everything = await client.get("/api/conversations", headers=admin.headers)
    assert [c["id"] for c in everything.json()] == [alice_conv["id"], bob_conv["id"]]
    filtered = await client.get(
        "/api/conversations", params={"profile_id": bob_profile}, headers=admin.headers
    )
    assert [c["id"] for c in filtered.json()] == [bob_conv["id"]]
    paged = await client.get(
        "/api/conversations", params={"limit": 1, "offset": 1}, headers=admin.headers
    )
    assert [c["id"] for c in paged.json()] == [bob_conv["id"]]


async def test_other_users_conversation_is_not_found(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    fake_claude: FakeAnthropic,
) -> None:
    owner, stranger, admin = (
        await make_account(),
        await make_account(),
        await make_account(Role.ADMIN),
    )
    conversation = await start_conversation(client, owner, await create_profile(client, owner))
    path = f"/api/conversations/{conversation['id']}"

    assert_error(await client.get(path, headers=stranger.headers), 404, "not_found")
    posted = await client.post(f"{path}/messages", json={"content": "Hi"}, headers=stranger.headers)
    assert_error(posted, 404, "not_found")
    assert_error(
        await client.get("/api/conversations/999999", headers=owner.headers), 404, "not_found"
    )
    assert fake_claude.requests == []
    assert await message_rows(app) == 0
    # Admins may read anyone's conversation.
    assert (await client.get(path, headers=admin.headers)).status_code == 200


async def test_conversation_needs_a_visible_profile(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner, stranger = await make_account(), await make_account()
    profile_id = await create_profile(client, owner)

    for missing in (profile_id, 999999):
        response = await client.post(
            "/api/conversations", json={"profile_id": missing}, headers=stranger.headers
        )
        assert_error(response, 404, "not_found")


async def test_slow_upstream_is_504_and_stores_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    fake_claude: FakeAnthropic,
) -> None:
    user = await make_account()
    conversation = await start_conversation(client, user, await create_profile(client, user))
    fake_claude.slow(10.0)

    with capture_logs() as logs:
        response = await client.post(
            f"/api/conversations/{conversation['id']}/messages",
            json={"content": "Hello?"},
            headers=user.headers,
        )

    assert "upstream" in assert_error(response, 504, "llm_timeout")["message"]
    assert len(fake_claude.requests) == 1
    assert await message_rows(app) == 0
    [generation] = [entry for entry in logs if entry["event"] == "personality_generation"]
    assert generation["success"] is False
    assert generation["error"] == "timeout"


@pytest.mark.parametrize("status", [500, 529, 400])
async def test_upstream_error_is_502_and_stores_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    fake_claude: FakeAnthropic,
    status: int,
) -> None:
    user = await make_account()
    conversation = await start_conversation(client, user, await create_profile(client, user))
    fake_claude.fail(status)

    response = await client.post(
        f"/api/conversations/{conversation['id']}/messages",
        json={"content": "Hello?"},
        headers=user.headers,
    )

    body = assert_error(response, 502, "llm_upstream_error")
    assert UPSTREAM_SECRET_DETAIL not in response.text
    assert API_KEY not in response.text
    assert "upstream" in body["message"]
    assert await message_rows(app) == 0


async def test_upstream_rate_limit_is_503_with_retry_after(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    fake_claude: FakeAnthropic,
) -> None:
    user = await make_account()
    conversation = await start_conversation(client, user, await create_profile(client, user))
    fake_claude.fail(429, headers={"retry-after": "12"})

    response = await client.post(
        f"/api/conversations/{conversation['id']}/messages",
        json={"content": "Hello?"},
        headers=user.headers,
    )

    assert_error(response, 503, "llm_rate_limited")
    assert response.headers["retry-after"] == "12"
    assert await message_rows(app) == 0


@pytest.mark.parametrize(
    "payload",
    [
        {"content": ""},
        {"content": "   \n"},
        {"content": "x" * 20_001},
        {},
        {"content": "hi", "role": "assistant"},
    ],
    ids=["empty", "blank", "too-long", "missing", "extra-field"],
)
async def test_message_validation(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    fake_claude: FakeAnthropic,
    payload: dict[str, Any],
) -> None:
    user = await make_account()
    conversation = await start_conversation(client, user, await create_profile(client, user))

    response = await client.post(
        f"/api/conversations/{conversation['id']}/messages", json=payload, headers=user.headers
    )

    body = assert_error(response, 422, "validation_error")
    field = "role" if "role" in payload else "content"
    assert f"body.{field}" in body["message"]
    assert fake_claude.requests == []
    assert await message_rows(app) == 0


async def test_conversation_title_validation(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    user = await make_account()
    profile_id = await create_profile(client, user)
    for title in ("", "t" * 201):
        response = await client.post(
            "/api/conversations",
            json={"profile_id": profile_id, "title": title},
            headers=user.headers,
        )
        assert "body.title" in assert_error(response, 422, "validation_error")["message"]


async def test_unauthenticated_is_401(
    client: httpx.AsyncClient, fake_claude: FakeAnthropic
) -> None:
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/api/conversations", None),
        ("GET", "/api/conversations/1", None),
        ("POST", "/api/conversations", {"profile_id": 1}),
        ("POST", "/api/conversations/1/messages", {"content": "Hi"}),
    ]
    for method, url, payload in requests:
        assert_error(await client.request(method, url, json=payload), 401, "unauthorized")
    assert fake_claude.requests == []


class ProbeModel:
    """A ConversationModel that looks at the database while it is being awaited."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None
        self.checked_out: list[int] = []
        self.rows_seen: list[int] = []

    async def reply(self, *, system: str, turns: Sequence[ChatTurn]) -> Reply:
        assert self.app is not None
        self.checked_out.append(self.app.state.host.database.engine.pool.checkedout())
        self.rows_seen.append(await message_rows(self.app))
        return Reply("probe reply", "probe-model", 1, 2, 0.0)

    async def aclose(self) -> None:
        """Nothing to release."""


async def test_no_connection_is_held_while_the_model_answers(
    settings: Settings, clock: FakeClock, make_account: MakeAccount
) -> None:
    # make_account uses the fixture app's database; the probe app shares the same one.
    probe = ProbeModel()
    probe_app = create_app(settings, clock=clock, llm=probe)
    probe.app = probe_app
    async with probe_app.router.lifespan_context(probe_app):
        transport = httpx.ASGITransport(app=probe_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            user = await make_account()
            conversation = await start_conversation(http, user, await create_profile(http, user))
            for content in ("one", "two"):
                response = await http.post(
                    f"/api/conversations/{conversation['id']}/messages",
                    json={"content": content},
                    headers=user.headers,
                )
                assert response.status_code == 201, response.text
            assert await message_rows(probe_app) == 4

    assert probe.checked_out == [0, 0]
    assert probe.rows_seen == [0, 2]


class TestWithoutApiKey:
    """No claude.api_key: conversations can be read and created, not answered."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"claude": {"api_key": None}}

    async def test_posting_is_503_at_once_and_stores_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
    ) -> None:
        assert app.state.host.llm is None
        user = await make_account()
        conversation = await start_conversation(client, user, await create_profile(client, user))

        started = time.monotonic()
        response = await client.post(
            f"/api/conversations/{conversation['id']}/messages",
            json={"content": "Hello?"},
            headers=user.headers,
        )
        elapsed = time.monotonic() - started

        body = assert_error(response, 503, "llm_not_configured")
        assert "claude.api_key" in body["message"]
        assert elapsed < 1.0
        assert await message_rows(app) == 0
        # Even for a conversation that does not exist: the check comes first.
        missing = await client.post(
            "/api/conversations/999999/messages", json={"content": "Hi"}, headers=user.headers
        )
        assert_error(missing, 503, "llm_not_configured")


# -- prompt building (pure functions) -------------------------------------------


def stored(role: str, content: str) -> Message:
    return Message(role=role, content=content)


def test_history_keeps_newest_turns_within_budget_and_starts_with_user() -> None:
    big = "y" * (MAX_HISTORY_CHARS // 2)
    messages = [
        stored("user", "old question"),
        stored("assistant", big),
        stored("user", big),
        stored("assistant", "short answer"),
    ]

    turns = history_turns(messages)

    # "old question" and the first big reply do not fit; a history must not
    # start with an assistant turn, so only the newest user/assistant pair stays.
    assert turns == [ChatTurn(TurnRole.USER, big), ChatTurn(TurnRole.ASSISTANT, "short answer")]


def test_history_drops_a_leading_assistant_turn() -> None:
    turns = history_turns([stored("assistant", "hi"), stored("user", "hello")])
    assert turns == [ChatTurn(TurnRole.USER, "hello")]


def test_system_prompt_bounds_the_profile_data() -> None:
    prompt = build_system_prompt("Ada", {"notes": "z" * (MAX_PROFILE_PROMPT_CHARS * 2)})
    assert "Ada" in prompt
    assert "(truncated)" in prompt
    assert len(prompt) < MAX_PROFILE_PROMPT_CHARS + 1000
