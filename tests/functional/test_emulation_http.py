"""The HTTP side of bidirectional emulation, spoken by hand: an HTTP-streaming session
whose commands (and pongs) arrive as ``/emulation`` requests, the statuses centrifuge-js
reads, CORS for browsers, and the limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from broker.auth import make_token
from broker.protocol.protobuf_codec import encode_message
from tests.functional.conftest import SECRET, RunningNode, base_config, run_node, wait_until


def config(**extra: Any) -> dict[str, Any]:
    return base_config(http_stream={"enabled": True}, sse={"enabled": True},
                       client={"ping_interval": "2s", "pong_timeout": "1s"}, **extra)


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with run_node(config()) as running:
        yield running


async def replies(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    async for raw in response.content:
        if raw.strip():
            yield json.loads(raw)


async def next_reply(stream: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    async for reply in stream:
        return reply
    raise AssertionError("the stream ended")


async def emulate(node: RunningNode, session: str, target: str, commands: list[Any],
                  **headers: str) -> int:
    body = {"session": session, "node": target,
            "data": "\n".join(json.dumps(c) for c in commands)}
    async with node.session.post(f"http://127.0.0.1:{node.port}/emulation", json=body,
                                 headers=headers) as response:
        return response.status


async def test_pongs_over_emulation_keep_a_session_alive(node: RunningNode) -> None:
    connect = json.dumps({"id": 1, "connect": {"token": make_token(SECRET, "p")}})
    url = f"http://127.0.0.1:{node.port}/connection/http_stream"
    async with node.session.post(url, data=connect) as response:
        stream = replies(response)
        result = (await next_reply(stream))["connect"]
        session, target = result["session"], result["node"]
        assert session.startswith(f"{target}.") and target == node.node.uid
        assert result["pong"] is True
        for _ in range(3):  # a ping every 2 s; no pong within 1 s would end it (3012)
            assert await next_reply(stream) == {}
            assert await emulate(node, session, target, [{}]) == 204
        assert await emulate(node, session, target, [{"id": 2, "ping": {}},
                                                     {"id": 3, "ping": {}}]) == 204
        assert [await next_reply(stream) for _ in range(2)] == [
            {"id": 2, "ping": {}}, {"id": 3, "ping": {}}]
        assert result["client"] in node.node.connections


async def test_without_pongs_an_emulated_session_ends_with_3012(node: RunningNode) -> None:
    connect = json.dumps({"id": 1, "connect": {"token": make_token(SECRET, "q")}})
    url = f"http://127.0.0.1:{node.port}/connection/http_stream"
    async with node.session.post(url, data=connect) as response:
        stream = replies(response)
        await next_reply(stream)
        assert await next_reply(stream) == {}  # the ping, left unanswered
        assert (await next_reply(stream))["push"]["disconnect"]["code"] == 3012
    await wait_until(lambda: not node.node.connections)


async def test_protobuf_emulation_request(node: RunningNode) -> None:
    from broker.protocol import PROTOBUF_CODEC

    connect = PROTOBUF_CODEC.encode_command({"id": 1, "connect": {
        "token": make_token(SECRET, "pb")}})
    url = f"http://127.0.0.1:{node.port}/connection/http_stream"
    headers = {"Content-Type": "application/octet-stream"}
    async with node.session.post(url, data=connect, headers=headers) as response:
        buffer = await response.content.readany()
        [reply] = PROTOBUF_CODEC.decode_replies(buffer)
        session, target = reply["connect"]["session"], reply["connect"]["node"]
        body = encode_message("EmulationRequest", {
            "node": target, "session": session,
            "data": PROTOBUF_CODEC.encode_command({"id": 7, "ping": {}})})
        async with node.session.post(f"http://127.0.0.1:{node.port}/emulation", data=body,
                                     headers=headers) as posted:
            assert posted.status == 204
        [pong] = PROTOBUF_CODEC.decode_replies(await response.content.readany())
        assert pong == {"id": 7, "ping": {}}


async def test_statuses_cors_and_limits(node: RunningNode) -> None:
    base = f"http://127.0.0.1:{node.port}"
    uid = node.node.uid
    # A session gone from this node: 204, its stream has ended (the SDK reconnects).
    assert await emulate(node, f"{uid}.gone", uid, [{"id": 1, "ping": {}}]) == 204
    async with node.session.post(f"{base}/emulation", data=b"{nope") as r:
        assert r.status == 400
    async with node.session.post(f"{base}/emulation", json={"session": "s", "data": 5}) as r:
        assert r.status == 400
    async with node.session.post(f"{base}/emulation", data=b"x" * 70000) as r:
        assert r.status == 413 and "emulation.max_request_body_size" in await r.text()
    # Browsers: the same origin is served with CORS headers, another origin refused.
    origin = f"http://127.0.0.1:{node.port}"
    async with node.session.options(f"{base}/emulation", headers={
            "Origin": origin, "Access-Control-Request-Headers": "content-type"}) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == origin
        assert r.headers["Access-Control-Allow-Headers"] == "content-type"
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert await emulate(node, f"{uid}.x", uid, [{}], Origin="http://evil.example") == 403
    async with node.session.post(f"{base}/connection/http_stream", data=b"{}",
                                 headers={"Origin": "http://evil.example"}) as r:
        assert r.status == 403
    async with node.session.get(f"{base}/connection/sse") as r:
        assert r.status == 400 and "cf_connect" in await r.text()
    assert not node.node.connections


async def test_transports_are_off_unless_enabled() -> None:
    async with run_node(base_config()) as node:
        base = f"http://127.0.0.1:{node.port}"
        for path in ("/connection/http_stream", "/connection/sse", "/emulation",
                     "/connection/uni_sse", "/connection/uni_http_stream"):
            async with node.session.post(f"{base}{path}", data=b"{}") as r:
                assert r.status == 404, path
