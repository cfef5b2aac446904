"""``websocket.detach``: the socket leaves aiohttp after the upgrade and behaves the same.

The RFC 6455 cases of ``test_websocket_rfc6455`` run on both readers (detached and
aiohttp's); these are what only the detached path has to get right: nothing of the HTTP
request stays alive, frames pipelined right behind the upgrade reach the actor in order,
the message size limit, and a publication's round trip.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession

from broker.auth import make_token
from tests.functional.conftest import SECRET, RunningNode, base_config, run_node
from tests.reliability.helpers import OP_TEXT, RawSocket, frame, raw_socket
from tests.waiting import wait_until

DETACH = {"websocket": {"detach": True, "message_size_limit": 1024}}


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with run_node(base_config(**DETACH)) as running:
        yield running


async def test_the_http_request_is_released_after_the_upgrade(node: RunningNode) -> None:
    async with raw_socket(node.port) as sock:
        await sock.connect()
        conn = next(iter(node.node.connections.values()))
        transport = conn.link.writer
        protocol = transport.get_protocol()
        assert type(protocol).__name__ == "DirectWebSocket"
        gc.collect()
        # No aiohttp RequestHandler, request or WebSocketResponse is reachable from the
        # socket's protocol any more: the connection is the actor and this object.
        assert not [r for r in gc.get_referrers(protocol)
                    if type(r).__name__ in ("RequestHandler", "Request", "WebSocketResponse")]
        sock.send_text(json.dumps({"id": 2, "ping": {}}))
        assert await sock.read_json() == [{"id": 2, "ping": {}}]


async def test_frames_pipelined_behind_the_upgrade_arrive_in_order(node: RunningNode) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    token = make_token(SECRET, "early")
    commands = [{"id": 1, "connect": {"token": token}}] + [
        {"id": i, "ping": {}} for i in range(2, 12)]
    request = (b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
    # The commands leave in the same packet as the upgrade request.
    writer.write(request + b"".join(frame(OP_TEXT, json.dumps(c).encode()) for c in commands))
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    sock = RawSocket(reader, writer)
    ids: list[int] = []
    while len(ids) < len(commands):
        ids += [reply["id"] for reply in await sock.read_json()]
    assert ids == list(range(1, 12))
    sock.close()


async def test_a_message_over_the_limit_is_closed_with_1009(node: RunningNode) -> None:
    async with raw_socket(node.port) as sock:
        await sock.connect()
        sock.send_text(json.dumps({"id": 2, "ping": {"x": "a" * 1100}}))
        assert await sock.close_code() == 1009
    await wait_until(lambda: not node.node.connections, "the connection to be released")


async def test_a_publication_reaches_a_detached_subscriber(node: RunningNode) -> None:
    async with ClientSession() as session, session.ws_connect(node.ws_url) as ws:
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": make_token(SECRET, "u")}}))
        assert "connect" in json.loads((await ws.receive()).data)
        await ws.send_str(json.dumps({"id": 2, "subscribe": {"channel": "news"}}))
        assert "subscribe" in json.loads((await ws.receive()).data)
        await node.chorus.publish("news", b'{"n":1}')
        push = json.loads((await ws.receive(timeout=5)).data)
        assert push["push"]["pub"]["data"] == {"n": 1}
        await ws.close()
    await wait_until(lambda: not node.node.connections, "the connection to be released")
