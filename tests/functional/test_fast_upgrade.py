"""WebSocket upgrades answered before aiohttp's request machinery (broker.transport.fastws):
a plain upgrade becomes a connection at once, with the bytes aiohttp would have sent;
every other request reaches aiohttp exactly as it arrived, and aiohttp answers it.

``run_node`` serves through ``UpgradeRunner`` as ``chorus serve`` does, so every other
functional test goes through this path too; here are its own edges, on a real node.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from typing import Any

import pytest

from broker.auth import make_token
from broker.transport.fastws import UpgradeProtocol
from broker.transport.routes import WEBSOCKET_PATH
from broker.transport.wsdirect import DirectWebSocket
from tests.functional.conftest import SECRET, WAIT, RunningNode, base_config, run_node
from tests.reliability.helpers import OP_TEXT, frame
from tests.waiting import wait_until

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def head(path: str = WEBSOCKET_PATH, *, version: str = "HTTP/1.1",
         extra: tuple[str, ...] = (), key: str = "dGhlIHNhbXBsZSBub25jZQ==") -> bytes:
    lines = [f"GET {path} {version}", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
             "Sec-WebSocket-Version: 13", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Transport(asyncio.Transport):
    """What the protocol writes and which protocol it hands the socket to."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.protocol: Any = None
        self.closed = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.9", 40000) if name == "peername" else default


class Handler(asyncio.Protocol):
    """aiohttp's RequestHandler's stand-in: what it was given."""

    def __init__(self) -> None:
        self.made: Any = None
        self.data = b""

    def connection_made(self, transport: Any) -> None:
        self.made = transport

    def data_received(self, data: bytes) -> None:
        self.data += data


def protocol(running: RunningNode, handlers: list[Handler],
             keepalive: float = 75.0) -> tuple[UpgradeProtocol, Transport]:
    def factory() -> Handler:
        handlers.append(Handler())
        return handlers[-1]

    proto = UpgradeProtocol(factory, running.chorus.state, WEBSOCKET_PATH, keepalive)
    transport = Transport()
    proto.connection_made(transport)
    return proto, transport


async def test_a_plain_upgrade_becomes_a_connection_without_aiohttp() -> None:
    async with run_node(base_config()) as running:
        handlers: list[Handler] = []
        proto, transport = protocol(running, handlers)
        proto.data_received(head())
        assert handlers == []
        assert isinstance(transport.protocol, DirectWebSocket)
        answer = transport.written[0]
        accept = base64.b64encode(hashlib.sha1(b"dGhlIHNhbXBsZSBub25jZQ==" + WS_GUID).digest())
        assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"Sec-WebSocket-Accept: " + accept + b"\r\n" in answer
        assert len(running.node.connections) == 1
        remote = next(iter(running.node.connections.values())).remote
        assert remote == "127.0.0.9"


@pytest.mark.parametrize("request_head", [
    head(WEBSOCKET_PATH + "?format=json"),  # a query string
    head("/connection/other"),  # another path
    head(version="HTTP/1.0"),
    head(extra=("Upgrade: websocket",)),  # a header twice
    head(extra=("Content-Length: 0",)),
    head(extra=("Expect: 100-continue",)),
    head(extra=("Origin: http://elsewhere.example",)),  # refused: aiohttp answers 403
    head(key="short"),  # refused: aiohttp answers 400
    head(extra=("X-Bin: caf\xe9",)),  # not ASCII
    head()[:-2] + b"\n",  # a bare LF ends the head
    head().replace(b"GET", b"get"),
    head()[:40],  # the head is not complete in the first read
], ids=["query", "path", "http10", "twice", "body", "expect", "origin", "bad-key",
        "latin1", "bare-lf", "method-case", "partial"])
async def test_anything_else_reaches_aiohttp_as_it_arrived(request_head: bytes) -> None:
    async with run_node(base_config()) as running:
        handlers: list[Handler] = []
        proto, transport = protocol(running, handlers)
        proto.data_received(request_head)
        [handler] = handlers
        assert transport.protocol is handler and handler.made is transport
        assert handler.data == request_head and transport.written == []
        assert len(running.node.connections) == 0


async def test_a_draining_node_leaves_the_upgrade_to_aiohttp() -> None:
    async with run_node(base_config()) as running:
        running.node.draining = True
        handlers: list[Handler] = []
        proto, _ = protocol(running, handlers)
        proto.data_received(head())
        assert len(handlers) == 1


async def test_a_connection_that_sends_nothing_is_closed_after_the_keepalive() -> None:
    async with run_node(base_config()) as running:
        handlers: list[Handler] = []
        _, transport = protocol(running, handlers, keepalive=0.05)
        await wait_until(lambda: transport.closed, "the idle close")
        assert handlers == []


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        if b" 101 " in answer:
            answer += await asyncio.wait_for(reader.read(4096), WAIT)
        return answer
    finally:
        writer.close()


def _without_date(answer: bytes) -> bytes:
    return b"\r\n".join(line for line in answer.split(b"\r\n") if not line.startswith(b"Date:"))


async def test_the_fast_answer_is_aiohttps_and_frames_behind_the_head_are_read() -> None:
    """Over real sockets: the same 101 as aiohttp's path gives (the query string sends
    the second request there), and a connect sent in the same write as the upgrade
    request is answered."""
    async with run_node(base_config()) as running:
        key = base64.b64encode(os.urandom(16)).decode()
        token = make_token(SECRET, "u1").encode()
        connect = frame(OP_TEXT, b'{"id":1,"connect":{"token":"%s"}}' % token)
        fast = await _exchange(running.port, head(key=key) + connect)
        slow = await _exchange(running.port, head(WEBSOCKET_PATH + "?x=1", key=key) + connect)
        fast_head, _, fast_rest = fast.partition(b"\r\n\r\n")
        slow_head, _, slow_rest = slow.partition(b"\r\n\r\n")
        assert _without_date(fast_head) == _without_date(slow_head)
        assert b'"id":1,"connect":{"client":' in fast_rest
        assert b'"id":1,"connect":{"client":' in slow_rest
