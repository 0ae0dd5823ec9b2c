"""Three real ``digitalme serve`` processes on one PostgreSQL and one Redis behave as one.

Only configuration differs from a single instance: the database, telemetry store and
Redis URLs (plus, here, a 3 s lease so that a takeover happens within the test's
patience, and a Slack webhook pointed at a receiver on 127.0.0.1). Each process
gets its own port; they start one after the other (the first applies the
migrations).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from websockets.asyncio.client import ClientConnection, connect

from receivers import HttpReceiver, ReceivedRequest
from serve_process import ServeProcess
from servers import PostgresServer, RedisServer

NOTICE_FIRED = "🚨"
NOTICE_RESOLVED = "🟢"

ADMIN_PASSWORD = "a long admin password"
SLACK_PATH = "/services/T0001/B0001/XXscaleOUTxx"
DEADLINE = 30.0  # a bound for waiting, never a timing assertion
LEASE = 3.0

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)


class Cluster:
    """Three processes on one database and one Redis, and an admin's HTTP clients."""

    def __init__(self, root: Path, database_url: str, redis_url: str, slack: HttpReceiver):
        config = {
            "server": {"data_dir": str(root / "var")},
            "connection_strings": {
                "database": database_url,
                "telemetry_store": database_url,
                "redis": redis_url,
            },
            "health": {"prober_enabled": False},
            "security": {"rate_limit_per_ip": "100000/minute"},
            "cluster": {"lease_seconds": LEASE},
            "notifications": {
                "slack": {"enabled": True, "webhook_url": slack.url(SLACK_PATH), "timeout": 2},
            },
        }
        path = root / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {"DIGITALME_CONFIG": str(path), "DIGITALME_ADMIN_PASSWORD": ADMIN_PASSWORD}
        self.slack = slack
        self.processes = [ServeProcess(root, env) for _ in range(3)]
        self._stack = ExitStack()
        self.clients: list[httpx.Client] = []
        self.headers: dict[str, str] = {}

    def __enter__(self) -> Cluster:
        try:
            for process in self.processes:
                self._stack.enter_context(process)
                self.clients.append(
                    self._stack.enter_context(httpx.Client(base_url=process.base_url, timeout=10))
                )
            response = self.clients[0].post(
                "/api/auth/login", json={"email": "admin@localhost", "password": ADMIN_PASSWORD}
            )
            assert response.status_code == 200, response.text
        except BaseException:
            self._stack.close()
            raise
        self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def status(self, index: int) -> dict[str, Any]:
        response = self.clients[index].get("/api/cluster", headers=self.headers)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def alive(self) -> list[int]:
        return [
            index
            for index, process in enumerate(self.processes)
            if process.process is not None and process.process.poll() is None
        ]

    def leader(self) -> int:
        """The index of the process that leads (waiting for an election if needed)."""

        def leading() -> int | None:
            for index in self.alive():
                if self.status(index)["leading"]:
                    return index + 1  # truthy
            return None

        found: int = wait_for(leading, "a leader") - 1
        return found

    def check(self, index: int, name: str) -> str:
        """A health check's status as ``/health/ready`` reports it to an admin."""
        response = self.clients[index].get("/health/ready", headers=self.headers)
        return {r["name"]: str(r["status"]) for r in response.json()["results"]}[name]

    def hit(self, index: int, path: str, times: int, status: int = 404) -> None:
        for _ in range(times):
            assert self.clients[index].get(path).status_code == status

    def count(self, index: int, dims: str, instance: str | None = None) -> float:
        params = {"name": "http.server.duration", "agg": "count", "dims": dims}
        if instance is not None:
            params["instance"] = instance
        response = self.clients[index].get(
            "/api/metrics/series", params=params, headers=self.headers
        )
        assert response.status_code == 200, response.text
        return sum(point["value"] or 0 for point in response.json()["points"])

    def create_rule(self, index: int, rule: dict[str, Any]) -> None:
        response = self.clients[index].post("/api/alerts/rules", json=rule, headers=self.headers)
        assert response.status_code == 201, response.text

    def slack_texts(self, title: str) -> list[str]:
        return [
            text for text in (_text(request) for request in self.slack.requests) if title in text
        ]


def _text(request: ReceivedRequest) -> str:
    try:
        return str(request.json()["text"])
    except (ValueError, KeyError):
        return ""


def breach_rule(rule_id: str, **extra: Any) -> dict[str, Any]:
    """At least 20 refused (401) reads of ``/api/cluster`` within a minute."""
    return {
        "id": rule_id,
        "name": f"Refused {rule_id}",
        "metric_name": "http.server.duration",
        "filters": {"route": "GET /api/cluster", "status_code": "401"},
        "aggregation": "count",
        "operator": ">=",
        "threshold": 20,
        "evaluation_window": 60,
        "severity": "High",
        "notification_channels": ["slack"],
        **extra,
    }


@pytest.fixture(scope="module")
def slack() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    slack: HttpReceiver,
) -> Iterator[Cluster]:
    name = "scale_out_shared"
    postgres_server.create_database(name)
    root = tmp_path_factory.mktemp("cluster")
    with Cluster(root, postgres_server.async_url(name), redis_server.url, slack) as running:
        yield running


def test_one_leader_and_every_instance_in_the_status(cluster: Cluster) -> None:
    leader = cluster.leader()
    statuses = [cluster.status(index) for index in range(3)]
    assert [s["leading"] for s in statuses].count(True) == 1
    assert statuses[leader]["leading"]
    holders = {s["lease"]["holder"] for s in statuses}
    assert holders == {statuses[leader]["instance"]}
    assert all(s["backplane"]["connected"] for s in statuses)


def test_traffic_spread_over_the_instances_gives_exact_totals_on_each(cluster: Cluster) -> None:
    for index, times in enumerate((13, 7, 5)):
        cluster.hit(index, f"/totals-{index}", times)
    for index in range(3):
        wait_for(
            lambda index=index: cluster.count(index, "status_code=404") == 25,
            f"25 requests on the dashboard of instance {index}",
        )
    # one instance's share, asked of another instance
    second = cluster.status(1)["instance"]
    assert cluster.count(2, "status_code=404", instance=second) == 7


def test_a_breach_on_one_instance_notifies_once_and_reaches_a_hub_client_of_another(
    cluster: Cluster,
) -> None:
    leader = cluster.leader()
    follower = (leader + 1) % 3
    cluster.create_rule(follower, breach_rule("refused_reads"))  # forwarded to the leader
    token = cluster.headers["Authorization"].removeprefix("Bearer ")
    url = cluster.processes[(leader + 2) % 3].base_url.replace("http", "ws")
    traffic_on = (leader + 1) % 3

    async def watch_hub() -> tuple[dict[str, Any], dict[str, Any]]:
        async with connect(f"{url}/hubs/metrics?access_token={token}") as ws:
            async with asyncio.timeout(DEADLINE):
                while json.loads(await ws.recv())["type"] != "Welcome":
                    pass
                await asyncio.to_thread(cluster.hit, traffic_on, "/api/cluster", 25, 401)
                fired: dict[str, Any] | None = None
                snapshot: dict[str, Any] | None = None
                while fired is None or snapshot is None:
                    message: dict[str, Any] = json.loads(await ws.recv())
                    if message["type"] == "AlertFired":
                        fired = message
                    # the live figures include the other instances' requests
                    if message["type"] == "MetricsSnapshot" and message["requests_1m"] >= 25:
                        snapshot = message
                return fired, snapshot

    fired, snapshot = asyncio.run(watch_hub())
    assert snapshot["instances"] >= 2
    assert fired["alert"]["rule_id"] == "refused_reads"
    assert fired["instance"] == cluster.status(leader)["instance"]  # raised by the leader
    wait_for(lambda: cluster.slack_texts("Refused refused_reads"), "the Slack notice")
    time.sleep(2 * LEASE)  # more evaluation rounds on every instance: still one notice
    [notice] = cluster.slack_texts("Refused refused_reads")
    assert notice.startswith("🚨")


def fresh_database(server: PostgresServer, name: str) -> str:
    server.create_database(name)
    return server.async_url(name)


def test_killing_the_leader_mid_breach_still_notifies_once_and_resolves(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    database = fresh_database(postgres_server, "scale_out_failover")
    with HttpReceiver() as slack, Cluster(tmp_path, database, redis_server.url, slack) as cluster:
        leader = cluster.leader()
        followers = [index for index in range(3) if index != leader]
        rule = breach_rule("failover", evaluation_window=20, min_duration=4)
        cluster.create_rule(followers[0], rule)
        cluster.hit(followers[1], "/api/cluster", 25, 401)

        def pending() -> bool:
            response = cluster.clients[followers[0]].get("/api/alerts", headers=cluster.headers)
            return any(a["rule_id"] == "failover" for a in response.json()["alerts"])

        wait_for(pending, "the breach seen (pending) before the leader is killed")
        assert cluster.slack_texts("Refused failover") == []
        cluster.processes[leader].kill()  # SIGKILL: no hand-over

        new_leader = cluster.leader()
        assert new_leader != leader
        wait_for(
            lambda: [t[:1] for t in cluster.slack_texts("Refused failover")] == [NOTICE_FIRED],
            "the fired notice from the new leader",
        )
        wait_for(
            lambda: len(cluster.slack_texts("Refused failover")) == 2,
            "the resolved notice once the refusals leave the 20 s window",
            timeout=60,
        )
        time.sleep(LEASE)  # more rounds: nothing else comes
        texts = cluster.slack_texts("Refused failover")
        assert [text[:1] for text in texts] == [NOTICE_FIRED, NOTICE_RESOLVED]


def test_the_hub_backplane_recovers_when_redis_comes_back(
    tmp_path: Path, postgres_server: PostgresServer, isolated_redis_server: RedisServer
) -> None:
    database = fresh_database(postgres_server, "scale_out_redis")
    redis = isolated_redis_server
    with HttpReceiver() as slack, Cluster(tmp_path, database, redis.url, slack) as cluster:
        leader = cluster.leader()
        raiser, watcher = (leader + 1) % 3, (leader + 2) % 3
        redis.kill()
        wait_for(
            lambda: not cluster.status(watcher)["backplane"]["connected"],
            "the backplane seen down",
        )
        assert cluster.check(watcher, "hub-backplane") == "Degraded"
        # while Redis is down, alerting still works through PostgreSQL
        response = cluster.clients[raiser].post(
            "/api/alerts",
            json={"title": "During the outage", "severity": "High", "category": "Availability"},
            headers=cluster.headers,
        )
        assert response.status_code == 201, response.text

        redis.restart()
        wait_for(
            lambda: all(cluster.status(i)["backplane"]["connected"] for i in range(3)),
            "every backplane connected again",
        )
        token = cluster.headers["Authorization"].removeprefix("Bearer ")
        url = cluster.processes[watcher].base_url.replace("http", "ws")

        async def hear_remote_alert() -> dict[str, Any]:
            async with connect(f"{url}/hubs/metrics?access_token={token}") as ws:
                async with asyncio.timeout(DEADLINE):
                    while json.loads(await ws.recv())["type"] != "Welcome":
                        pass
                    raised = await asyncio.to_thread(
                        cluster.clients[raiser].post,
                        "/api/alerts",
                        json={"title": "After the outage", "severity": "High",
                              "category": "Availability"},
                        headers=cluster.headers,
                    )  # fmt: skip
                    assert raised.status_code == 201, raised.text
                    while True:
                        message: dict[str, Any] = json.loads(await ws.recv())
                        if message["type"] == "AlertFired":
                            return message

        fired = asyncio.run(hear_remote_alert())
        assert fired["alert"]["title"] == "After the outage"
        assert fired["instance"] == cluster.status(leader)["instance"]
        wait_for(  # the check's last result may be cached for a few seconds
            lambda: cluster.check(watcher, "hub-backplane") == "Healthy", "the check healthy"
        )


def test_serve_with_two_workers_behaves_as_one(tmp_path: Path) -> None:
    """``serve --workers 2`` on the embedded SQLite store and no Redis: one leader, and a hub
    client of either worker hears an alert raised through the other (store backplane)."""
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"server": {"data_dir": str(tmp_path / "var")}, "health": {"prober_enabled": False}}
        )
    )
    env = {
        "DIGITALME_CONFIG": str(config),
        "DIGITALME_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "DIGITALME__SERVER__WORKERS": "2",
    }
    with ServeProcess(tmp_path, env) as server:
        response = httpx.post(
            f"{server.base_url}/api/auth/login",
            json={"email": "admin@localhost", "password": ADMIN_PASSWORD},
        )
        assert response.status_code == 200, response.text
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

        def status() -> dict[str, Any]:
            # a new connection each time: the kernel hands it to either worker
            found: dict[str, Any] = httpx.get(
                f"{server.base_url}/api/cluster", headers=headers, timeout=10
            ).json()
            return found

        workers: set[str] = set()

        def both_answered() -> bool:
            workers.add(status()["instance"])
            return len(workers) == 2

        wait_for(both_answered, "both workers answering")
        leaders = {status()["lease"]["holder"] for _ in range(6)}
        assert len(leaders) == 1  # both workers name the same leader
        assert leaders <= workers

        token = headers["Authorization"].removeprefix("Bearer ")
        url = server.base_url.replace("http", "ws")

        async def a_client_of_each_worker_hears() -> None:
            sockets: dict[str, ClientConnection] = {}
            opened: list[ClientConnection] = []
            try:
                async with asyncio.timeout(DEADLINE):
                    while len(sockets) < 2:  # new connections until both workers have one
                        ws = await connect(f"{url}/hubs/metrics?access_token={token}")
                        opened.append(ws)
                        while (welcome := json.loads(await ws.recv()))["type"] != "Welcome":
                            pass
                        sockets.setdefault(welcome["instance"], ws)
                    raised = await asyncio.to_thread(
                        httpx.post,
                        f"{server.base_url}/api/alerts",
                        json={"title": "Workers", "severity": "High", "category": "Availability"},
                        headers=headers,
                    )
                    assert raised.status_code == 201, raised.text
                    for ws in sockets.values():
                        while json.loads(await ws.recv())["type"] != "AlertFired":
                            pass
            finally:
                for ws in opened:
                    await ws.close()

        asyncio.run(a_client_of_each_worker_hears())
