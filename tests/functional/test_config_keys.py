"""Behaviour of config keys that no other test covered (see tests/unit/test_config_coverage.py):
each test sets the key and watches a real node do what the key says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from broker.auth import make_token
from tests.functional.conftest import (
    SECRET,
    RunningNode,
    base_config,
    free_port,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)

HISTORY = {"allow_subscribe_for_client": True, "allow_history_for_subscriber": True,
           "history_size": 100, "history_ttl": "60s"}


async def api(node: RunningNode, method: str, params: dict[str, Any]) -> dict[str, Any]:
    status, body = await node.api(method, params)
    assert status == 200, body
    return dict(body)


async def connect_reply(node: RunningNode) -> dict[str, Any]:
    async with node.session.ws_connect(node.ws_url) as ws:
        await ws.send_json({"id": 1, "connect": {"token": make_token(SECRET, "t")}})
        return dict((await ws.receive_json(timeout=5))["connect"])


# -- client -----------------------------------------------------------------------------------
async def test_connect_include_server_time() -> None:
    async with run_node(base_config()) as node:
        assert "time" not in await connect_reply(node)
    async with run_node(base_config(client={"connect_include_server_time": True})) as node:
        before = int(time.time() * 1000)
        stamp = (await connect_reply(node))["time"]
        assert before - 1000 <= stamp <= int(time.time() * 1000) + 1000  # unix ms


async def test_history_max_publication_limit_caps_every_history_read() -> None:
    config = base_config(client={"history_max_publication_limit": 3},
                         channel={"without_namespace": HISTORY})
    async with run_node(config) as node, sdk_client(node) as sdk:
        sub, _ = await sdk.subscribe("log")
        for n in range(5):
            await api(node, "publish", {"channel": "log", "data": n})
        for asked in (10, -1):
            result = await sub.history(limit=asked)
            assert [sdk.value(p.data) for p in result.publications] == [0, 1, 2]
        assert len((await sub.history(limit=2)).publications) == 2


async def test_presence_is_refreshed_every_presence_update_interval() -> None:
    """Presence expires three intervals after the last refresh (0.9 s here); a client
    that stays subscribed is refreshed and never drops out."""
    config = base_config(client={"presence_update_interval": "300ms"},
                         channel={"without_namespace": {"presence": True}})
    async with run_node(config) as node, sdk_client(node) as sdk:
        await sdk.subscribe("room")
        engine, loop = node.node.engine, asyncio.get_running_loop()
        end = loop.time() + 2.5  # well past the 0.9 s a single add would last
        while loop.time() < end:  # the invariant holds all along, not only at the end
            assert sdk.client_id in await engine.presence("room")
            await asyncio.sleep(0.1)


# -- channel options --------------------------------------------------------------------------
@pytest.mark.parametrize(("options", "asked", "positioned"), [
    ({}, True, False),
    ({"allow_positioning": True}, False, False),
    ({"allow_positioning": True}, True, True),
    ({"force_positioning": True}, False, True),
], ids=["not-allowed", "allowed-not-asked", "allowed-asked", "forced"])
async def test_positioning_only_when_allowed_and_asked_or_forced(
        options: dict[str, Any], asked: bool, positioned: bool) -> None:
    config = base_config(channel={"without_namespace": {**HISTORY, **options}})
    async with run_node(config) as node, sdk_client(node) as sdk:
        await api(node, "publish", {"channel": "feed", "data": 1})
        _, events = await sdk.subscribe("feed", positioned=asked)
        subscribed = await next_event(events.subscribed)
        assert subscribed.positioned is positioned
        if positioned:  # the SDK now tracks the stream position the server gave
            assert subscribed.stream_position is not None
            assert subscribed.stream_position.offset == 1


async def test_history_ttl_drops_the_publications() -> None:
    config = base_config(channel={"without_namespace": {**HISTORY, "history_ttl": "1s"}})
    async with run_node(config) as node:
        await api(node, "publish", {"channel": "brief", "data": 1})
        kept = await api(node, "history", {"channel": "brief", "limit": 10})
        assert len(kept["result"]["publications"]) == 1

        async def gone() -> bool:
            body = await api(node, "history", {"channel": "brief", "limit": 10})
            return not body["result"]["publications"]

        await wait_until(gone, "the publication dropped after history_ttl")


async def test_history_meta_ttl_ends_the_epoch() -> None:
    """The engine's stream meta (epoch, top offset) ends ``history_meta_ttl`` after the
    last publish. Read with the L1 cache off: L1 keeps an idle channel's position past
    the engine's meta TTL (a known gap, reported apart)."""
    config = base_config(channel={"history_meta_ttl": "1s", "without_namespace": {
        **HISTORY, "history_ttl": "1s", "cache_policy": "off"}})
    async with run_node(config) as node:
        first = (await api(node, "publish", {"channel": "meta", "data": 1}))["result"]["epoch"]
        # Every read extends the meta's life, so nothing may look before it is over.
        await asyncio.sleep(1.5)
        later = await api(node, "history", {"channel": "meta", "limit": 0})
        assert later["result"]["epoch"] != first and later["result"]["offset"] == 0


# -- server API, node, monitor ------------------------------------------------------------------
async def test_http_api_insecure_needs_no_key() -> None:
    for http_api, status in (({"key": "", "insecure": True}, 200), ({"key": "k"}, 401)):
        async with run_node(base_config(http_api=http_api)) as node, node.session.post(
                f"http://127.0.0.1:{node.port}/api/info", json={}) as response:
            assert response.status == status  # no X-API-Key sent


async def test_node_name_is_the_one_info_reports() -> None:
    async with run_node(base_config(chorus={"node_name": "edge-7"})) as node:
        assert (await api(node, "info", {}))["result"]["nodes"][0]["name"] == "edge-7"


@asynccontextmanager
async def hanging_webhook() -> AsyncIterator[tuple[str, asyncio.Queue[None]]]:
    """A webhook receiver that takes requests and never answers them."""
    arrived: asyncio.Queue[None] = asyncio.Queue()
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        arrived.put_nowait(None)
        await never.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", arrived
    finally:
        never.set()
        await runner.cleanup()


async def test_webhook_timeout_gives_up_on_a_hanging_receiver() -> None:
    async with hanging_webhook() as (url, arrived):
        config = base_config(monitor={"interval": "50ms", "webhook_url": url,
                                      "webhook_timeout": "200ms",
                                      "alerts": ["crowded: connections >= 1"]})
        async with run_node(config) as node, sdk_client(node):
            await next_event(arrived)
            started = time.monotonic()
            board = node.node.metrics.board
            await wait_until(lambda: board.webhook_failed == 1, "the webhook given up",
                             timeout=3)
            assert time.monotonic() - started < 2  # the 5 s default would still wait
            assert board.webhook_sent == 0


async def test_monitor_interval_is_the_sampling_period() -> None:
    async with run_node(base_config(monitor={"interval": "50ms"})) as node:
        board, started = node.node.metrics.board, time.monotonic()
        await wait_until(lambda: board.samples >= 8, "eight samples")
        assert time.monotonic() - started < 1.0  # the 1 s default would take 8 s


async def test_shard_count_is_the_number_of_shard_actors() -> None:
    config = base_config(chorus={"shard_count": 3}, admin={"enabled": True, "insecure": True})
    async with run_node(config) as node:
        url = f"http://127.0.0.1:{node.port}/admin/api/actors/chorus/shards"
        async with node.session.get(url) as response:
            children = (await response.json())["children"]
        assert len(children) == 3 and len({node.node.shard_of(f"c{n}") for n in range(60)}) == 3


# -- cache ----------------------------------------------------------------------------------------
async def test_cache_max_pending_bounds_the_write_behind_buffer() -> None:
    """Past ``cache.max_pending`` unflushed publications a write-behind publish is
    refused (100, temporary) instead of growing the buffer."""
    config = base_config(cache={"max_pending": 2}, channel={"without_namespace": {
        **HISTORY, "cache_policy": "write_behind", "cache_flush_delay": "30s"}})
    async with run_node(config) as node:
        for n in (1, 2):
            assert (await api(node, "publish", {"channel": "wb", "data": n}))["result"]
        status, body = await node.api("publish", {"channel": "wb", "data": 3})
        assert body["error"]["code"] == 100, (status, body)


# -- notifications ------------------------------------------------------------------------------
async def test_notifications_disabled_answers_108() -> None:
    async with run_node(base_config(notifications={"enabled": False})) as node:
        status, body = await node.api("notify", {"user": "u", "payload": 1})
        assert status == 200 and body["error"]["code"] == 108


async def test_notification_retention_by_count_and_age() -> None:
    config = base_config(notifications={"retention_count": 2, "retention_age": "1s"})
    async with run_node(config) as node:
        for n in range(3):
            await api(node, "notify", {"user": "u", "payload": n})
        listed = await api(node, "notifications", {"user": "u"})
        assert [n["payload"] for n in listed["result"]["notifications"]] == [1, 2]

        async def aged_out() -> bool:
            body = await api(node, "notifications", {"user": "u"})
            return body["result"]["notifications"] == []

        await wait_until(aged_out, "notifications older than retention_age gone")
