"""Unidirectional transports read by plain clients (aiohttp), as a device or a script
without an SDK would: uni SSE, uni HTTP stream and uni WebSocket — the connect push with
server-side subscriptions, publications, recovery from a position, pings without pongs,
and the disconnect push that ends the stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from broker.auth import make_token
from tests.functional.conftest import SECRET, RunningNode, base_config, run_node, wait_until

Push = dict[str, Any]


def config() -> dict[str, Any]:
    return base_config(
        uni_sse={"enabled": True}, uni_http_stream={"enabled": True},
        uni_websocket={"enabled": True},
        client={"ping_interval": "2s", "pong_timeout": "1s"},
        channel={"namespaces": [{"name": "news", "history_size": 20, "history_ttl": "60s",
                                 "allow_recovery": True}]})


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with run_node(config()) as running:
        yield running


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[Push]:
    """Each Server-Sent Event's data, parsed (one JSON push per event)."""
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("data: "):
            data.append(line[len("data: "):])
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []


async def lines(response: aiohttp.ClientResponse) -> AsyncIterator[Push]:
    async for raw in response.content:
        if raw.strip():
            yield json.loads(raw)


async def next_push(pushes: AsyncIterator[Push], skip_pings: bool = True) -> Push:
    async for push in pushes:
        if push or not skip_pings:
            return push
    raise AssertionError("the stream ended")


def token(user: str, **claims: Any) -> str:
    return make_token(SECRET, user, channels=["news:sport"], **claims)


async def test_uni_sse_connect_publications_pings_and_disconnect(node: RunningNode) -> None:
    url = f"http://127.0.0.1:{node.port}/connection/uni_sse"
    params = {"cf_connect": json.dumps({"token": token("ann")})}
    async with node.session.get(url, params=params) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        events = sse_events(response)
        connect = (await next_push(events))["connect"]
        assert set(connect["subs"]) == {"news:sport"} and "pong" not in connect
        conn = node.node.connections[connect["client"]]
        assert conn.link.name == "uni_sse" and conn.link.unidirectional

        await node.api("publish", {"channel": "news:sport", "data": {"goal": 1}})
        assert await next_push(events) == {"channel": "news:sport",
                                           "pub": {"data": {"goal": 1}, "offset": 1}}
        # Pinged every 2 s, never asked for a pong: still here after two pings.
        assert await next_push(events, skip_pings=False) == {}
        assert await next_push(events, skip_pings=False) == {}
        assert connect["client"] in node.node.connections

        await node.api("disconnect", {"user": "ann"})
        assert (await next_push(events))["disconnect"]["code"] == 3503
        assert [push async for push in events] == []  # and the stream ends
    await wait_until(lambda: not node.node.connections)


async def test_uni_http_stream_recovers_from_a_position_in_the_connect_request(
        node: RunningNode) -> None:
    for n in (1, 2, 3):
        await node.api("publish", {"channel": "news:sport", "data": {"n": n}})
    _, history = await node.api("history", {"channel": "news:sport", "limit": 0})
    epoch = history["result"]["epoch"]
    request = {"token": token("bob"),
               "subs": {"news:sport": {"recover": True, "offset": 1, "epoch": epoch}}}
    url = f"http://127.0.0.1:{node.port}/connection/uni_http_stream"
    async with node.session.post(url, json=request) as response:
        assert response.status == 200
        pushes = lines(response)
        sub = (await next_push(pushes))["connect"]["subs"]["news:sport"]
        assert sub["recovered"] and sub["was_recovering"]
        assert [p["data"]["n"] for p in sub["publications"]] == [2, 3]
        await node.api("publish", {"channel": "news:sport", "data": {"n": 4}})
        assert (await next_push(pushes))["pub"]["offset"] == 4


async def test_uni_websocket_first_message_connect_and_close_code(node: RunningNode) -> None:
    url = f"ws://127.0.0.1:{node.port}/connection/uni_websocket"
    async with node.session.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"token": token("cy")}))
        connect = json.loads((await ws.receive(timeout=5)).data)["connect"]
        assert "news:sport" in connect["subs"]
        await node.api("publish", {"channel": "news:sport", "data": {"x": 1}})
        await node.api("publish", {"channel": "news:sport", "data": {"x": 2}})
        got = [json.loads((await ws.receive(timeout=5)).data) for _ in range(2)]
        assert [p["pub"]["data"]["x"] for p in got] == [1, 2], "one push per message"
        await node.api("disconnect", {"user": "cy"})
        assert json.loads((await ws.receive(timeout=5)).data)["disconnect"]["code"] == 3503
        close = await ws.receive(timeout=5)
        assert close.type is aiohttp.WSMsgType.CLOSE and close.data == 3503


async def test_uni_refusals(node: RunningNode) -> None:
    base = f"http://127.0.0.1:{node.port}/connection"
    async with node.session.get(f"{base}/uni_sse", params={"cf_connect": "{not json"}) as r:
        assert r.status == 400
    async with node.session.post(f"{base}/uni_http_stream", data=b"x" * 70000) as r:
        assert r.status == 413 and "uni_http_stream.max_request_body_size" in await r.text()
    async with node.session.get(f"{base}/uni_http_stream") as r:
        assert r.status == 405
    # An expired token refuses the connect: Centrifugo's mapping, 109 -> 3005.
    expired = make_token(SECRET, "late", ttl=-10)
    async with node.session.post(f"{base}/uni_http_stream", json={"token": expired}) as r:
        assert (await next_push(lines(r)))["disconnect"]["code"] == 3005
    async with node.session.ws_connect(f"ws://127.0.0.1:{node.port}/connection/"
                                       "uni_websocket") as ws:
        await ws.send_str("[1, 2]")
        close = await ws.receive(timeout=5)
        assert close.type is aiohttp.WSMsgType.CLOSE and close.data == 3501
    await wait_until(lambda: not node.node.connections)


async def test_uni_websocket_options_join_pushes_drop_the_disconnect_push_and_limit() -> None:
    """``join_push_messages`` puts the pushes of one tick in one message (newline
    joined); ``disable_disconnect_push`` leaves the code to the close frame alone;
    ``message_size_limit`` bounds the connect message; ``handler_prefix`` moves it."""
    mapping = config()
    mapping["uni_websocket"] = {"enabled": True, "join_push_messages": True,
                                "disable_disconnect_push": True, "message_size_limit": 512,
                                "handler_prefix": "/rt/uni"}
    async with run_node(mapping) as node:
        url = f"ws://127.0.0.1:{node.port}/rt/uni"
        async with node.session.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"token": token("joiner")}))
            assert "connect" in json.loads((await ws.receive(timeout=5)).data)
            await node.api("batch", {"commands": [
                {"publish": {"channel": "news:sport", "data": {"x": i}}} for i in range(3)]})
            got: list[Push] = []
            messages = 0
            while len(got) < 3:
                message = await ws.receive(timeout=5)
                messages += 1
                got += [json.loads(line) for line in message.data.split("\n") if line]
            assert [p["pub"]["data"]["x"] for p in got] == [0, 1, 2]
            assert messages < 3, "pushes of one tick share a message"
            await node.api("disconnect", {"user": "joiner"})
            close = await ws.receive(timeout=5)  # no disconnect push first
            assert close.type is aiohttp.WSMsgType.CLOSE and close.data == 3503
        async with node.session.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"token": token("big"), "data": "x" * 600}))
            close = await ws.receive(timeout=5)
            assert close.type is aiohttp.WSMsgType.CLOSE and close.data == 1009
