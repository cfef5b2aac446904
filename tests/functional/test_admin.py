"""The admin JSON API over real HTTP: authentication, every read route and every action."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from broker.admin.auth import issue_session
from tests.functional.conftest import (
    RunningNode,
    base_config,
    listening_socket,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)

PASSWORD = "console-password"
SECRET = "admin-secret-for-tests-0123456789"
BEARER = {"Authorization": f"Bearer {SECRET}"}


def config(*, allow_crash: bool = True, **overrides: Any) -> dict[str, Any]:
    namespace = {"name": "room", "allow_subscribe_for_client": True, "presence": True,
                 "history_size": 10, "history_ttl": "60s"}
    overrides.setdefault("monitor", {"interval": "50ms"})
    return base_config(
        admin={"enabled": True, "password": PASSWORD, "secret": SECRET,
               "allow_crash_actor": allow_crash},
        channel={"namespaces": [namespace]}, **overrides)


async def call(node: RunningNode, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{node.port}/admin/api/{path}"
    async with node.session.request(method, url, json=body,
                                    headers=BEARER if headers is None else headers) as response:
        return response.status, await response.json()


ROUTES = [("GET", "session"), ("GET", "tree"), ("GET", "actors/chorus/shards/shard-0"),
          ("GET", "connections"), ("GET", "connections/x"), ("GET", "channels"),
          ("GET", "channels/room:a"), ("GET", "nodes"), ("GET", "alerts"),
          ("POST", "actors/chorus/shards/shard-0/stop"),
          ("POST", "actors/chorus/shards/shard-0/restart"),
          ("POST", "actors/chorus/shards/shard-0/crash"), ("POST", "connections/x/disconnect"),
          ("POST", "unsubscribe"), ("POST", "publish")]


async def test_every_route_refuses_a_missing_wrong_or_expired_token() -> None:
    expired = issue_session(SECRET, now=0.0)
    forged = issue_session("another-secret")
    async with run_node(config()) as node:
        for method, path in ROUTES:
            for headers in ({}, {"Authorization": "Bearer nope"},
                            {"Authorization": f"Bearer {expired}"},
                            {"Authorization": f"Bearer {forged}"},
                            {"Authorization": SECRET}):  # no "Bearer"
                status, body = await call(node, method, path, {}, headers)
                assert (status, body) == (401, {"error": "unauthorized"}), (method, path)
        assert node.node.runtime.actor("chorus/shards/shard-0")["restarts"] == 0


async def test_login_issues_a_session_token_that_opens_the_api() -> None:
    async with run_node(config()) as node:
        assert (await call(node, "POST", "login", {"password": "wrong"}, {}))[0] == 401
        assert (await call(node, "POST", "login", {}, {}))[0] == 401
        status, body = await call(node, "POST", "login", {"password": PASSWORD}, {})
        assert status == 200 and body["expires_at"] > 0
        session = {"Authorization": f"Bearer {body['token']}"}
        status, info = await call(node, "GET", "session", headers=session)
        assert (status, info["allow_crash_actor"]) == (200, True)


async def login_from(node: RunningNode, source: str, password: str) -> tuple[int, Any, str]:
    """POST login from the loopback address ``source`` (Linux routes all of 127/8 to lo)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session, session.post(
            f"http://127.0.0.1:{node.port}/admin/api/login",
            json={"password": password}) as response:
        return response.status, await response.json(), response.headers.get("Retry-After", "")


async def test_login_is_throttled_per_address_after_five_failures() -> None:
    async with run_node(config()) as node:
        for _ in range(4):
            assert (await login_from(node, "127.0.0.2", "wrong"))[0] == 401
        assert (await login_from(node, "127.0.0.2", PASSWORD))[0] == 200  # resets the count
        for _ in range(5):
            assert (await login_from(node, "127.0.0.2", "wrong"))[0] == 401
        for password in ("wrong", PASSWORD):  # even the right password waits now
            status, body, retry_after = await login_from(node, "127.0.0.2", password)
            assert status == 429 and "too many failed logins" in body["error"]
            assert 1 <= int(retry_after) <= 60
        status, body, _ = await login_from(node, "127.0.0.3", PASSWORD)  # another address
        assert status == 200 and body["token"]
        assert (await call(node, "GET", "tree"))[0] == 200  # the bearer secret still works


async def test_scrape_token_cannot_act_on_admin_and_admin_secret_cannot_scrape() -> None:
    token = "prometheus-scrape-token-0123456789"
    async with run_node(config(prometheus={"token": token})) as node:
        scraper = {"Authorization": f"Bearer {token}"}
        shard = "chorus/shards/shard-0"
        for method, path, body in (("POST", f"actors/{shard}/restart", None),
                                   ("POST", f"actors/{shard}/crash", None),
                                   ("POST", "publish", {"channel": "room:a", "data": 1}),
                                   ("GET", "tree", None)):
            assert await call(node, method, path, body, scraper) == (
                401, {"error": "unauthorized"}), path
        assert (await node.api("publish", {"channel": "room:a", "data": 1}, key=token))[0] == 401
        assert node.node.runtime.actor(shard)["restarts"] == 0
        metrics = f"http://127.0.0.1:{node.port}/metrics"
        async with node.session.get(metrics, headers=BEARER) as response:
            assert response.status == 401  # admin.secret no longer opens /metrics
        async with node.session.get(metrics, headers=scraper) as response:
            assert response.status == 200


async def test_admin_disabled_means_404_everywhere() -> None:
    async with run_node(base_config()) as node:
        async with node.session.get(f"http://127.0.0.1:{node.port}/admin/api/tree",
                                    headers=BEARER) as response:
            assert response.status == 404
        async with node.session.get(f"http://127.0.0.1:{node.port}/admin/") as response:
            assert response.status == 404


async def test_insecure_admin_needs_no_token() -> None:
    async with run_node(base_config(admin={"enabled": True, "insecure": True})) as node:
        assert (await call(node, "GET", "tree", headers={}))[0] == 200


async def test_console_page_and_assets_are_served() -> None:
    async with run_node(config()) as node:
        base = f"http://127.0.0.1:{node.port}"
        async with node.session.get(f"{base}/admin", allow_redirects=True) as response:
            assert response.status == 200 and "<title>Chorus admin</title>" in await response.text()
        for asset in ("app.js", "app.css"):
            async with node.session.get(f"{base}/admin/static/{asset}") as response:
                assert response.status == 200


async def test_tree_and_actor_views() -> None:
    async with run_node(config()) as node:
        status, body = await call(node, "GET", "tree")
        root = body["tree"][0]
        assert (status, root["id"], root["kind"]) == (200, "chorus", "root")
        top = {child["id"]: child for child in root["children"]}
        assert list(top) == ["chorus/engine", "chorus/shards", "chorus/connections",
                             "chorus/monitors"]
        assert [c["id"] for c in top["chorus/monitors"]["children"]] == [
            "chorus/monitors/node", "chorus/monitors/alerts", "chorus/monitors/journal"]
        assert top["chorus/shards"]["children_total"] == node.node.shard_count
        status, actor = await call(node, "GET", "actors/chorus/shards")
        assert status == 200 and len(actor["children"]) == node.node.shard_count
        assert (await call(node, "GET", "actors/chorus/nope"))[0] == 404


async def test_crash_restart_stop_actions() -> None:
    async with run_node(config()) as node, sdk_client(node, user="ann") as sdk:
        _, events = await sdk.subscribe("room:a")
        shard = f"chorus/shards/shard-{node.node.shard_of('room:a')}"
        assert (await call(node, "POST", f"actors/{shard}/crash"))[0] == 200
        status, actor = await call(node, "GET", f"actors/{shard}")
        assert status == 200 and actor["restarts"] == 1 and actor["state"] == "running"
        assert "crashed from the admin console" in actor["last_failure"]["reason"]
        await node.api("publish", {"channel": "room:a", "data": {"after": "crash"}})
        pub = await next_event(events.publications)
        assert sdk.value(pub.data) == {"after": "crash"}, "subscribers keep receiving"
        assert (await call(node, "POST", f"actors/{shard}/restart"))[0] == 200
        assert (await call(node, "GET", f"actors/{shard}"))[1]["restarts"] == 2
        connection = f"chorus/connections/{sdk.client_id}"  # temporary: stopping is fine
        assert (await call(node, "POST", f"actors/{connection}/stop"))[0] == 200
        await wait_until(lambda: connection not in node.node.runtime.registry,
                         "the connection actor to stop")
        assert sdk.client_id not in node.node.connections
        assert (await call(node, "GET", f"actors/{connection}"))[0] == 404
        assert (await call(node, "POST", "actors/chorus/stop"))[0] == 409
        assert (await call(node, "POST", "actors/chorus/crash"))[0] == 409
        assert (await call(node, "POST", "actors/chorus/nope/restart"))[0] == 404


@pytest.mark.parametrize("actor", ["shards/shard-{shard}", "shards", "monitors/alerts",
                                   "engine/link"])
async def test_stopping_a_permanent_actor_is_refused_and_the_shard_still_delivers(
        actor: str) -> None:
    async with run_node(config()) as node, sdk_client(node, user="sam") as sdk:
        _, events = await sdk.subscribe("room:s")
        shard = node.node.shard_of("room:s")
        actor_id = "chorus/" + actor.format(shard=shard)
        status, body = await call(node, "POST", f"actors/{actor_id}/stop")
        assert status == 409
        assert f"refused to stop {actor_id}" in body["error"]
        assert f"/admin/api/actors/{actor_id}/restart" in body["error"]
        snapshot = node.node.runtime.actor(actor_id)
        assert (snapshot["state"], snapshot["restarts"]) == ("running", 0)
        assert (await call(node, "POST", f"actors/{actor_id}/stop"))[0] == 409  # still
        status, _ = await node.api("publish", {"channel": "room:s", "data": {"n": 1}})
        assert status == 200
        assert sdk.value((await next_event(events.publications)).data) == {"n": 1}
        async with node.session.get(f"http://127.0.0.1:{node.port}/ready") as response:
            assert response.status == 200


async def test_restart_brings_back_a_permanent_child_that_is_not_running() -> None:
    async with run_node(config()) as node, sdk_client(node, user="ray") as sdk:
        shard = f"chorus/shards/shard-{node.node.shard_of('room:r')}"
        node.node.runtime.stop_actor(shard, force=True)  # below the API: the runtime's own
        await wait_until(lambda: shard not in node.node.runtime.registry, "the shard to stop")
        assert (await call(node, "GET", f"actors/{shard}"))[0] == 404
        status, body = await call(node, "POST", f"actors/{shard}/restart")
        assert (status, body["action"]) == (200, "restart")
        assert node.node.runtime.actor(shard)["state"] == "running"
        _, events = await sdk.subscribe("room:r")
        await node.api("publish", {"channel": "room:r", "data": {"back": True}})
        assert sdk.value((await next_event(events.publications)).data) == {"back": True}
        assert (await call(node, "POST", "actors/chorus/shards/nope/restart"))[0] == 404


async def test_crash_is_forbidden_unless_allowed() -> None:
    async with run_node(config(allow_crash=False)) as node:
        status, body = await call(node, "POST", "actors/chorus/shards/shard-0/crash")
        assert status == 403 and "allow_crash_actor" in body["error"]
        assert node.node.runtime.actor("chorus/shards/shard-0")["restarts"] == 0


async def test_connections_views_and_disconnect() -> None:
    async with run_node(config()) as node, sdk_client(node, user="bob") as sdk:
        await sdk.subscribe("room:a")
        status, body = await call(node, "GET", "connections")
        assert status == 200 and body["total"] == 1
        health = body["connections"][0]
        assert (health["client"], health["user"], health["subscriptions"]) == (
            sdk.client_id, "bob", ["room:a"])
        for key in ("remote", "transport", "protocol", "connected_at", "messages_in",
                    "bytes_in", "messages_out", "bytes_out", "outbox_bytes", "outbox_peak",
                    "last_error"):
            assert key in health
        assert (await call(node, "GET", f"connections/{sdk.client_id}"))[1]["user"] == "bob"
        assert (await call(node, "GET", "connections/nope"))[0] == 404
        status, body = await call(node, "POST", f"connections/{sdk.client_id}/disconnect")
        assert (status, body["code"]) == (200, 3503)
        disconnected = await next_event(sdk.events.disconnected)
        assert disconnected.code == 3503
        assert (await call(node, "POST", "connections/nope/disconnect"))[0] == 404


async def test_channel_views_with_presence_and_history() -> None:
    async with run_node(config()) as node, sdk_client(node, user="cat") as sdk:
        await sdk.subscribe("room:a")
        await node.api("publish", {"channel": "room:a", "data": {"n": 1}})
        status, body = await call(node, "GET", "channels")
        assert status == 200 and body["channels"] == [
            {"name": "room:a", "namespace": "room", "subscribers": 1,
             "shard": node.node.shard_of("room:a")}]
        status, detail = await call(node, "GET", "channels/room:a")
        assert status == 200 and detail["subscribers"] == 1
        assert detail["presence"]["num_clients"] == 1
        assert detail["presence"]["clients"] == [{"client": sdk.client_id, "user": "cat"}]
        assert detail["history"]["offset"] == 1
        assert detail["history"]["latest"][0]["data"] == '{"n":1}'


async def test_publish_and_unsubscribe_actions() -> None:
    async with run_node(config()) as node, sdk_client(node, user="dan") as sdk:
        _, events = await sdk.subscribe("room:b")
        status, body = await call(node, "POST", "publish", {"channel": "room:b",
                                                            "data": {"hi": 1}})
        assert (status, body["offset"]) == (200, 1)
        assert sdk.value((await next_event(events.publications)).data) == {"hi": 1}
        assert (await call(node, "POST", "publish", {"channel": "zzz:b", "data": 1}))[0] == 400
        assert (await call(node, "POST", "publish", {"channel": "room:b"}))[0] == 400
        status, body = await call(node, "POST", "unsubscribe", {"user": "dan",
                                                                "channel": "room:b"})
        assert (status, body["connections"]) == (200, 1)
        await next_event(events.unsubscribed)
        assert (await call(node, "POST", "unsubscribe", {"user": "dan"}))[0] == 400


async def test_nodes_view_has_samples_and_chart() -> None:
    async with run_node(config()) as node:
        await wait_until(lambda: node.node.metrics.board.samples >= 2, "two monitor samples")
        status, body = await call(node, "GET", "nodes")
        info = body["nodes"][0]
        assert status == 200 and info["readiness"]["ready"] is True
        assert info["sample"]["connections"] == 0 and info["sample"]["open_files"] > 0
        assert len(info["chart"]["t"]) >= 2 and "publications_rate" in info["chart"]


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, asyncio.Queue[Any]]]:
    received: asyncio.Queue[Any] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        received.put_nowait(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = listening_socket()  # bound here: no gap between picking the port and serving it
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("rule", ["crowded: connections >= 1 severity critical"])
async def test_alerts_route_and_webhook(rule: str) -> None:
    async with webhook_receiver() as (url, received), \
            run_node(config(monitor={"interval": "50ms", "alerts": [rule],
                                     "webhook_url": url})) as node:
        assert (await call(node, "GET", "alerts"))[1]["active"] == []
        async with sdk_client(node, user="eve"):
            posted = await next_event(received)
            assert (posted["status"], posted["alert"]["name"]) == ("firing", "crowded")
            status, body = await call(node, "GET", "alerts")
            assert status == 200 and [a["name"] for a in body["active"]] == ["crowded"]
            assert body["active"][0]["severity"] == "critical"
            assert body["rules"] == [rule]
        resolved = await next_event(received)
        assert resolved["status"] == "resolved"
        await wait_until(lambda: node.node.metrics.board.webhook_sent == 2, "webhook count")
        assert (await call(node, "GET", "alerts"))[1]["active"] == []


async def test_get_connection_health_reports_each_connection() -> None:
    from tests.functional.conftest import base_config, run_node

    async with run_node(base_config(client={"insecure": True})) as node:
        ws = await node.session.ws_connect(node.ws_url)
        await ws.send_str('{"id":1,"connect":{}}')
        await ws.receive(timeout=5)
        [health] = node.node.get_connection_health()
        assert health["protocol"] == "json" and health["messages_in"] == 1
        assert health["messages_out"] >= 1 and health["outbox_bytes"] >= 0
        assert node.node.get_connection_health(health["client"]) == [health]
        assert node.node.get_connection_health("gone") == []
        await ws.close()
