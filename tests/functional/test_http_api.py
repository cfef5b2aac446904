"""The server API (``POST /api/<method>``) in Centrifugo's request/response shapes, checked
against a live node with real SDK clients where a method acts on them."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import redis.asyncio as aioredis

from broker.auth import make_token
from tests.functional.conftest import (
    API_KEY,
    SECRET,
    RunningNode,
    base_config,
    next_event,
    run_node,
    sdk_client,
)
from tests.redis_server import redis_server

CONFIG = base_config(channel={
    "without_namespace": {"history_size": 10, "history_ttl": "60s", "presence": True},
    "namespaces": [{"name": "bare", "allow_subscribe_for_client": True}],
})


async def call(node: RunningNode, method: str, **params: Any) -> dict[str, Any]:
    status, body = await node.api(method, params)
    assert status == 200, (status, body)
    assert isinstance(body, dict)
    return body


async def test_publish_result_with_and_without_history() -> None:
    async with run_node(CONFIG) as node:
        first = await call(node, "publish", channel="kept", data={"a": 1})
        epoch = first["result"]["epoch"]
        assert first == {"result": {"offset": 1, "epoch": epoch}} and epoch
        assert await call(node, "publish", channel="kept", data=[2]) == {
            "result": {"offset": 2, "epoch": epoch}}
        assert await call(node, "publish", channel="bare:x", data="no history") == {
            "result": {}}


async def test_publish_options_tags_skip_history_idempotency() -> None:
    async with run_node(CONFIG) as node, sdk_client(node) as sdk:
        _, events = await sdk.subscribe("kept")
        tagged = await call(node, "publish", channel="kept", data=1, tags={"kind": "t"})
        pub = await next_event(events.publications)
        assert pub.tags == {"kind": "t"} and pub.offset == tagged["result"]["offset"]

        assert await call(node, "publish", channel="kept", data=2, skip_history=True) == {
            "result": {}}
        assert (await next_event(events.publications)).data == 2  # delivered, not stored
        history = await call(node, "history", channel="kept", limit=-1)
        assert [p["data"] for p in history["result"]["publications"]] == [1]

        once = await call(node, "publish", channel="kept", data=3, idempotency_key="k1")
        again = await call(node, "publish", channel="kept", data=3, idempotency_key="k1")
        assert again == once
        await call(node, "publish", channel="kept", data="marker")
        assert (await next_event(events.publications)).data == 3
        assert (await next_event(events.publications)).data == "marker"  # 3 came once


async def test_publish_errors() -> None:
    async with run_node(CONFIG) as node:
        assert await call(node, "publish", channel="nowhere:x", data=1) == {
            "error": {"code": 102, "message": "unknown channel"}}
        missing_data = await call(node, "publish", channel="kept")
        assert missing_data["error"]["code"] == 107
        missing_channel = await call(node, "publish", data=1)
        assert missing_channel["error"]["code"] == 107


async def test_broadcast_answers_per_channel() -> None:
    async with run_node(CONFIG) as node:
        body = await call(node, "broadcast", channels=["kept", "bare:y", "nowhere:z"],
                          data={"b": True})
        kept, bare, nowhere = body["result"]["responses"]
        assert kept["result"]["offset"] == 1
        assert bare == {"result": {}}
        assert nowhere == {"error": {"code": 102, "message": "unknown channel"}}
        assert (await call(node, "broadcast", data=1))["error"]["code"] == 107


async def test_subscribe_unsubscribe_disconnect_shapes() -> None:
    async with run_node(CONFIG) as node, sdk_client(node, user="u1") as sdk:
        assert await call(node, "subscribe", user="u1", channel="bare:s") == {"result": {}}
        assert (await next_event(sdk.events.subscribed)).channel == "bare:s"
        assert await call(node, "unsubscribe", user="u1", channel="bare:s") == {"result": {}}
        assert (await next_event(sdk.events.unsubscribed)).channel == "bare:s"
        assert await call(node, "disconnect", user="u1") == {"result": {}}
        assert (await next_event(sdk.events.disconnected)).code == 3503
        assert await call(node, "disconnect", user="nobody") == {"result": {}}
        assert (await call(node, "subscribe", channel="bare:s"))["error"]["code"] == 107


async def test_presence_and_presence_stats_shapes() -> None:
    token = make_token(SECRET, "p1", info={"name": "Pat"})
    async with run_node(CONFIG) as node, sdk_client(node, token=token) as sdk:
        await sdk.subscribe("room")
        presence = await call(node, "presence", channel="room")
        assert presence == {"result": {"presence": {sdk.client_id: {
            "client": sdk.client_id, "user": "p1", "conn_info": {"name": "Pat"}}}}}
        assert await call(node, "presence_stats", channel="room") == {
            "result": {"num_clients": 1, "num_users": 1}}
        assert (await call(node, "presence", channel="bare:x"))["error"]["code"] == 108
        assert (await call(node, "presence_stats", channel="bare:x"))["error"]["code"] == 108


async def test_history_and_history_remove_shapes() -> None:
    async with run_node(CONFIG) as node:
        for n in range(1, 6):
            await call(node, "publish", channel="h", data={"n": n})
        full = await call(node, "history", channel="h", limit=-1)
        epoch = full["result"]["epoch"]
        assert full == {"result": {"publications": [
            {"data": {"n": n}, "offset": n} for n in range(1, 6)], "offset": 5, "epoch": epoch}}
        newest = await call(node, "history", channel="h", limit=2, reverse=True)
        assert [p["offset"] for p in newest["result"]["publications"]] == [5, 4]
        since = await call(node, "history", channel="h", limit=10,
                           since={"offset": 3, "epoch": epoch})
        assert [p["offset"] for p in since["result"]["publications"]] == [4, 5]
        wrong = await call(node, "history", channel="h", since={"offset": 1, "epoch": "x"})
        assert wrong["error"]["code"] == 112
        assert (await call(node, "history", channel="bare:x"))["error"]["code"] == 108

        assert await call(node, "history_remove", channel="h") == {"result": {}}
        emptied = await call(node, "history", channel="h", limit=-1)
        assert emptied == {"result": {"publications": [], "offset": 5, "epoch": epoch}}


async def test_channels_lists_active_channels_with_pattern() -> None:
    async with run_node(CONFIG) as node, sdk_client(node, user="c1") as one, \
            sdk_client(node, user="c2") as two:
        await one.subscribe("bare:a")
        await two.subscribe("bare:a")
        await two.subscribe("room")
        assert await call(node, "channels") == {"result": {"channels": {
            "bare:a": {"num_clients": 2}, "room": {"num_clients": 1}}}}
        assert await call(node, "channels", pattern="bare:*") == {"result": {"channels": {
            "bare:a": {"num_clients": 2}}}}


async def test_info_describes_the_node() -> None:
    async with run_node(CONFIG) as node, sdk_client(node, user="i1") as sdk:
        await sdk.subscribe("room")
        nodes = (await call(node, "info"))["result"]["nodes"]
        local = nodes[0]
        assert local["uid"] and local["name"] and local["version"]
        assert (local["num_clients"], local["num_users"], local["num_subs"]) == (1, 1, 1)
        assert local["num_channels"] == 1
        assert local["uptime"] >= 0


async def test_batch_replies_in_order_keyed_by_method() -> None:
    async with run_node(CONFIG) as node:
        body = await call(node, "batch", commands=[
            {"publish": {"channel": "kept", "data": 1}},
            {"publish": {"channel": "nowhere:x", "data": 1}},
            {"presence_stats": {"channel": "room"}},
            {"frobnicate": {}},
        ])
        published, unknown, stats, bad = body["replies"]
        assert published == {"publish": {"offset": 1, "epoch": published["publish"]["epoch"]}}
        assert unknown == {"error": {"code": 102, "message": "unknown channel"}}
        assert stats == {"presence_stats": {"num_clients": 0, "num_users": 0}}
        assert bad["error"]["code"] == 104


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_parallel_batch_publishes_at_once_and_replies_in_command_order(
        engine: str) -> None:
    """``parallel: true`` (Centrifugo's batch flag): the commands run at once — on Redis
    their publishes are pipelined together — and each reply still sits at its command's
    place. As in Centrifugo, parallel commands have no order among themselves: each
    publication gets its own offset, and subscribers get them in offset order.

    On Redis each round starts with an empty script cache (as after a restart or a
    failover), so the publishes fail with NOSCRIPT and are retried: the retries must
    keep offset order too (they once went out unordered; CI caught 8..15 after 16..20).
    """
    with contextlib.ExitStack() as stack:
        config = CONFIG
        server = None
        if engine == "redis":
            server = stack.enter_context(redis_server())
            config = {**CONFIG, "engine": {"type": "redis", "redis": {"address": [server.url]}}}
        async with run_node(config) as node, sdk_client(node) as sdk:
            _, events = await sdk.subscribe("kept")
            for round_ in range(4):
                if server is not None:
                    flush = aioredis.Redis.from_url(server.url)
                    await flush.script_flush()
                    await flush.aclose()
                commands: list[Any] = [{"publish": {"channel": "kept", "data": n}}
                                       for n in range(20)]
                commands.insert(5, {"frobnicate": {}})
                body = await call(node, "batch", commands=commands, parallel=True)
                replies = body["replies"]
                assert replies[5]["error"]["code"] == 104
                del replies[5]
                offsets = {r["publish"]["offset"]: n for n, r in enumerate(replies)}
                first = 20 * round_ + 1
                assert sorted(offsets) == list(range(first, first + 20))
                got = [await next_event(events.publications) for _ in range(20)]
                assert [(p.offset, p.data) for p in got] == sorted(offsets.items())
            if engine == "redis":
                batcher = node.node.engine._batcher  # type: ignore[attr-defined]
                assert batcher.commands - batcher.pipelines >= 10, "not pipelined together"


async def test_batch_answers_malformed_commands_one_by_one() -> None:
    async with run_node(CONFIG) as node:
        body = await call(node, "batch", commands=[
            {"publish": {"channel": "kept", "data": 1}, "info": {}},  # two methods
            [],
            {"info": {}},
        ])
        two, not_a_command, info = body["replies"]
        assert two["error"]["code"] == not_a_command["error"]["code"] == 104
        assert "nodes" in info["info"]
        status, _ = await node.api("batch", {"commands": "publish"})
        assert status == 400


@pytest.mark.parametrize("headers", [
    {}, {"X-API-Key": "wrong"}, {"Authorization": "apikey wrong"}, {"X-API-Key": ""},
], ids=["missing", "wrong", "wrong-authorization", "empty"])
async def test_unauthorized_requests_get_401(headers: dict[str, str]) -> None:
    async with run_node(CONFIG) as node:
        url = f"http://127.0.0.1:{node.port}/api/publish"
        async with node.session.post(url, json={"channel": "kept", "data": 1},
                                     headers=headers) as response:
            assert response.status == 401
        history = await call(node, "history", channel="kept", limit=-1)
        assert history["result"]["publications"] == [], "nothing was published"


async def test_authorization_header_is_accepted() -> None:
    async with run_node(CONFIG) as node:
        url = f"http://127.0.0.1:{node.port}/api/info"
        async with node.session.post(url, json={},
                                     headers={"Authorization": f"apikey {API_KEY}"}) as resp:
            assert resp.status == 200 and "nodes" in (await resp.json())["result"]


async def test_bad_requests() -> None:
    async with run_node(CONFIG) as node:
        base = f"http://127.0.0.1:{node.port}/api"
        headers = {"X-API-Key": API_KEY}
        async with node.session.post(f"{base}/no_such_method", json={},
                                     headers=headers) as resp:
            assert resp.status == 404 and (await resp.json())["error"]["code"] == 104
        async with node.session.post(f"{base}/publish", data=b"{not json",
                                     headers=headers) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == 107
