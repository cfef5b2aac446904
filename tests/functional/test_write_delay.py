"""``client.write_delay`` and ``client.burst_write_delay``: how long frames wait so that
more of them share one write (see ``FlushScheduler``), watched on a real socket as the
WebSocket messages a subscriber receives (frames of one write arrive as one message,
newline-joined by the JSON protocol)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import ClientWebSocketResponse, WSMsgType

from broker.auth import make_token
from tests.functional.conftest import SECRET, RunningNode, base_config, run_node

CHANNEL = "room"


async def subscriber(node: RunningNode) -> ClientWebSocketResponse:
    ws = await node.session.ws_connect(node.ws_url)
    await ws.send_str(orjson.dumps({"id": 1, "connect": {"token": make_token(SECRET, "u")}})
                      .decode() + "\n" + orjson.dumps(
                          {"id": 2, "subscribe": {"channel": CHANNEL}}).decode())
    replies: set[int] = set()
    while replies != {1, 2}:
        for frame in await _frames(ws):
            replies.add(frame["id"])
    return ws


async def _frames(ws: ClientWebSocketResponse) -> list[dict[str, Any]]:
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT, msg
    return [orjson.loads(line) for line in msg.data.split("\n") if line]


async def messages(ws: ClientWebSocketResponse, pushes: int) -> list[list[Any]]:
    """The publications' data, grouped by the WebSocket message that carried them,
    until ``pushes`` publications arrived."""
    got: list[list[Any]] = []
    while sum(map(len, got)) < pushes:
        got.append([f["push"]["pub"]["data"] for f in await _frames(ws) if "push" in f])
    return got


async def publish(node: RunningNode, data: Any) -> None:
    status, body = await node.api("publish", {"channel": CHANNEL, "data": data})
    assert status == 200 and "result" in body, body


async def burst_then_two_requests(node: RunningNode) -> list[list[Any]]:
    """Put the node in a burst (three publications in one tick: a batch of two coalesces
    behind the first), then publish twice, one request after the other."""
    ws = await subscriber(node)
    status, _ = await node.api("batch", {"parallel": True, "commands": [
        {"publish": {"channel": CHANNEL, "data": n}} for n in range(3)]})
    assert status == 200
    assert sum(map(len, await messages(ws, 3))) == 3
    await publish(node, "a")
    await publish(node, "b")
    got = await messages(ws, 2)
    await ws.close()
    return got


async def test_burst_write_delay_lets_a_burst_spread_over_requests_share_a_write() -> None:
    waiting = base_config(client={"burst_write_delay": "500ms"})
    async with run_node(waiting) as node:
        assert await burst_then_two_requests(node) == [["a", "b"]]
    off = base_config(client={"burst_write_delay": 0})
    async with run_node(off) as node:
        assert await burst_then_two_requests(node) == [["a"], ["b"]]


async def test_write_delay_holds_every_write_and_joins_consecutive_requests() -> None:
    async with run_node(base_config()) as node:  # no delay, no burst: one write each
        ws = await subscriber(node)
        await publish(node, "a")
        await publish(node, "b")
        assert await messages(ws, 2) == [["a"], ["b"]]
        await ws.close()
    async with run_node(base_config(client={"write_delay": "400ms"})) as node:
        ws = await subscriber(node)
        started = time.monotonic()
        await publish(node, "a")
        await publish(node, "b")
        assert await messages(ws, 2) == [["a", "b"]]
        assert time.monotonic() - started >= 0.35  # it waited, not just coalesced
        await ws.close()
