"""Two nodes joined by the Redis engine: publications, user commands and node info cross."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import orjson
import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType

from tests.functional.conftest import RunningNode, base_config, run_node
from tests.waiting import wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
async def two_nodes(redis_url: str) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    mapping = base_config(
        client={"insecure": True},
        engine={"type": "redis", "redis": {"address": [redis_url], "prefix": "mn"}},
        channel={"without_namespace": {"history_size": 50, "history_ttl": "60s",
                                       "allow_recovery": True}},
    )
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(run_node(mapping))
        second = await stack.enter_async_context(run_node(mapping))
        yield first, second


async def connect(node: RunningNode, channel: str) -> ClientWebSocketResponse:
    ws = await node.session.ws_connect(node.ws_url)
    await ws.send_str('{"id":1,"connect":{}}\n'
                      + orjson.dumps({"id": 2, "subscribe": {"channel": channel}}).decode())
    seen: set[int] = set()
    while seen != {1, 2}:
        for reply in await replies(ws):
            seen.add(reply.get("id", 0))
    return ws


async def replies(ws: ClientWebSocketResponse, timeout: float = 5.0) -> list[dict[str, Any]]:
    message = await ws.receive(timeout=timeout)
    if message.type is not WSMsgType.TEXT:
        return [{"closed": message.data, "reason": message.extra}]
    return [orjson.loads(line) for line in message.data.split("\n") if line]


async def next_push(ws: ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        for reply in await replies(ws):
            if "push" in reply or "closed" in reply:
                return reply


async def test_publication_on_one_node_reaches_a_subscriber_on_the_other(
        two_nodes: tuple[RunningNode, RunningNode]) -> None:
    first, second = two_nodes
    ws = await connect(first, "news")
    status, body = await second.api("publish", {"channel": "news", "data": {"n": 1}})
    assert status == 200 and body["result"]["offset"] == 1
    push = await asyncio.wait_for(next_push(ws), 5)
    assert push["push"]["pub"]["data"] == {"n": 1}
    assert push["push"]["pub"]["offset"] == 1


async def test_disconnect_through_one_node_closes_the_users_socket_on_the_other(
        two_nodes: tuple[RunningNode, RunningNode]) -> None:
    first, second = two_nodes
    ws = await connect(first, "room")
    status, _ = await second.api("disconnect", {"user": "", "disconnect": {
        "code": 4000, "reason": "moved"}})
    assert status == 200
    closed = await asyncio.wait_for(next_push(ws), 5)
    assert closed["closed"] == 4000


async def test_refresh_through_one_node_reaches_the_users_socket_on_the_other(
        two_nodes: tuple[RunningNode, RunningNode]) -> None:
    first, second = two_nodes
    ws = await connect(first, "room")
    status, _ = await second.api("refresh", {"user": "", "expire_at": 4_000_000_000,
                                             "info": {"seat": 7}})
    assert status == 200
    push = await asyncio.wait_for(next_push(ws), 5)
    assert push["push"]["refresh"]["expires"] is True
    status, _ = await second.api("refresh", {"user": "", "expired": True})
    assert status == 200
    closed = await asyncio.wait_for(next_push(ws), 5)
    assert closed["closed"] == 3005


async def test_info_lists_both_nodes(two_nodes: tuple[RunningNode, RunningNode]) -> None:
    first, second = two_nodes

    async def node_count_is(count: int) -> bool:
        _, body = await first.api("info", {})
        return len(body["result"]["nodes"]) >= count

    await wait_until(lambda: node_count_is(2), "the other node in info", timeout=10)
    _, body = await first.api("info", {})
    uids = {n["uid"] for n in body["result"]["nodes"]}
    assert uids == {first.node.uid, second.node.uid}
