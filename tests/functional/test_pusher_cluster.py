"""Pusher across two nodes on one real redis-server: triggers, presence and client events
cross nodes as Centrifugo-protocol traffic does; occupancy webhooks and
``max_connections`` count the whole cluster."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from aiohttp import ClientSession

from broker.pusher.state import cluster_connections
from tests.functional.conftest import RunningNode, _merge, run_node
from tests.functional.pusherkit import (
    APP_ID,
    KEY,
    auth_backend,
    call,
    needs_pusher_js,
    pusher_config,
    pusher_js,
    server_lib,
)
from tests.functional.test_pusher_webhooks import receiver
from tests.waiting import wait_until

pytestmark = [pytest.mark.redis, *needs_pusher_js]


@pytest.fixture
async def two_nodes(redis_url: str) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    mapping = _merge(pusher_config(), {
        "engine": {"type": "redis", "redis": {"address": [redis_url], "prefix": "pz"}}})
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(run_node(mapping))
        second = await stack.enter_async_context(run_node(mapping))
        yield first, second


async def test_a_trigger_on_one_node_reaches_pusher_js_on_the_other(two_nodes):
    first, second = two_nodes
    async with auth_backend(second) as backend, pusher_js(second, backend) as js:
        await js.expect("connected")
        await js.call("subscribe", channel="private-feed")
        await js.expect("members", lambda e: e["channel"] == "private-feed")
        await call(server_lib(first).trigger, "private-feed", "tick", {"n": 1})
        got = await js.expect("message")
        assert (got["channel"], got["name"], got["data"]) == ("private-feed", "tick", {"n": 1})


async def test_presence_members_and_client_events_are_cluster_wide(two_nodes):
    first, second = two_nodes
    names = iter(["ann", "bob"])
    assigned: dict[str, str] = {}

    def user_for(socket_id: str) -> str:
        return assigned.setdefault(socket_id, next(names))

    async with auth_backend(first, user_for) as backend, pusher_js(first, backend) as ann:
        await ann.expect("connected")
        await ann.call("subscribe", channel="presence-hall")
        assert (await ann.expect("members"))["ids"] == ["ann"]
        async with pusher_js(second, backend) as bob:
            await bob.expect("connected")
            await bob.call("subscribe", channel="presence-hall")
            assert (await bob.expect("members"))["ids"] == ["ann", "bob"]
            assert (await ann.expect("member_added"))["id"] == "bob"
            users = await call(server_lib(second).users_info, "presence-hall")
            assert sorted(u["id"] for u in users["users"]) == ["ann", "bob"]
            await ann.call("bind", channel="presence-hall", name="client-wave")
            await bob.call("trigger", channel="presence-hall", event="client-wave",
                           data={"hi": 1})
            wave = await ann.expect("bound")
            assert wave["data"] == {"hi": 1} and wave["user_id"] == "bob"
            await bob.call("disconnect")
            assert (await ann.expect("member_removed"))["id"] == "bob"


@asynccontextmanager
async def raw_socket(node: RunningNode) -> AsyncIterator[Any]:
    """A bare Pusher socket (public channels need no auth), once established."""
    async with ClientSession() as session, session.ws_connect(
            f"ws://127.0.0.1:{node.port}/app/{KEY}?protocol=7") as ws:
        hello = json.loads((await ws.receive()).data)
        assert hello["event"] == "pusher:connection_established", hello
        yield ws


async def subscribe_raw(ws: Any, channel: str) -> None:
    await ws.send_str(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}))
    reply = json.loads((await ws.receive()).data)
    assert reply["event"] == "pusher_internal:subscription_succeeded", reply


async def test_occupied_and_vacated_webhooks_are_sent_once_for_the_cluster(redis_url: str):
    async with receiver() as (url, events, _, validator):
        mapping = _merge(pusher_config(webhooks=[{"url": url}]), {
            "engine": {"type": "redis", "redis": {"address": [redis_url], "prefix": "po"}}})

        def named(name: str) -> list[dict]:
            return [e for e in events if e["name"] == name and e["channel"] == "news"]

        async with run_node(mapping) as first, run_node(mapping) as second, \
                raw_socket(first) as ann, raw_socket(second) as bob:
            validator.append(server_lib(first))
            await subscribe_raw(ann, "news")
            await wait_until(lambda: len(named("channel_occupied")) == 1, timeout=10)
            await subscribe_raw(bob, "news")  # the second node: occupied already
            await ann.send_str(json.dumps({"event": "pusher:unsubscribe",
                                           "data": {"channel": "news"}}))
            # the channel is still occupied on the other node: no vacated yet
            await ann.send_str(json.dumps({"event": "pusher:ping", "data": {}}))
            assert json.loads((await ann.receive()).data)["event"] == "pusher:pong"
            await bob.send_str(json.dumps({"event": "pusher:unsubscribe",
                                           "data": {"channel": "news"}}))
            await wait_until(lambda: len(named("channel_vacated")) == 1, timeout=10)
            await subscribe_raw(ann, "news")  # occupied afresh
            await wait_until(lambda: len(named("channel_occupied")) == 2, timeout=10)
            assert len(named("channel_vacated")) == 1
            assert [e["name"] for e in events if e["channel"] == "news"] == [
                "channel_occupied", "channel_vacated", "channel_occupied"]


@pytest.mark.slow  # waits for heartbeats (every 3 s)
async def test_max_connections_counts_the_sockets_of_every_node(redis_url: str):
    mapping = _merge(pusher_config(max_connections=1), {
        "engine": {"type": "redis", "redis": {"address": [redis_url], "prefix": "pm"}}})
    async with run_node(mapping) as first, run_node(mapping) as second:
        def seen_by_second() -> int:
            return cluster_connections(second.node, APP_ID)

        async with raw_socket(first):
            await wait_until(lambda: seen_by_second() == 1, timeout=15)
            async with ClientSession() as session, session.ws_connect(
                    f"ws://127.0.0.1:{second.port}/app/{KEY}?protocol=7") as ws:
                error = json.loads((await ws.receive()).data)
                assert error["event"] == "pusher:error" and error["data"]["code"] == 4004
        await wait_until(lambda: seen_by_second() == 0, timeout=15)
        async with raw_socket(second):  # room again once the first node says so
            assert cluster_connections(second.node, APP_ID) == 1


async def test_a_batch_keeps_each_channels_order_while_channels_go_at_once(two_nodes):
    first, second = two_nodes
    async with raw_socket(second) as ws:
        for channel in ("left", "right"):
            await subscribe_raw(ws, channel)
        batch = [{"channel": ("left", "right")[i % 2], "name": "n", "data": str(i)}
                 for i in range(10)]
        await call(server_lib(first).trigger_batch, batch)
        got: dict[str, list[str]] = {"left": [], "right": []}
        while sum(map(len, got.values())) < 10:
            event = json.loads((await ws.receive(timeout=5)).data)
            got[event["channel"]].append(event["data"])
        assert got == {"left": ["0", "2", "4", "6", "8"], "right": ["1", "3", "5", "7", "9"]}
