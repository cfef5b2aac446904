"""Shared pieces of the reliability suite: a hand-rolled WebSocket client over a raw
socket (for RFC 6455 edge cases and for clients that stop reading), JSON raw clients
over aiohttp, latency percentiles and RSS."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType

from broker.auth import make_token
from tests.functional.conftest import SECRET, WAIT, RunningNode

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True,
          rsv: int = 0) -> bytes:
    """One client-to-server WebSocket frame, built by hand (RFC 6455 section 5.2)."""
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return header + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + masked


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


@dataclass
class Received:
    opcode: int
    payload: bytes
    fin: bool

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])


class RawSocket:
    """A WebSocket client that speaks frames by hand over an asyncio stream.

    ``read_frame`` returns server frames one at a time (servers never mask); nothing is
    read unless the test asks, so a test can make a client that stops reading.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, *, protocol: str = "", origin: str = "",
                   limit: int = 1 << 16) -> RawSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=limit)
        key = base64.b64encode(os.urandom(16)).decode()
        headers = ["GET /connection/websocket HTTP/1.1", f"Host: 127.0.0.1:{port}",
                   "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                   "Sec-WebSocket-Version: 13"]
        if protocol:
            headers.append(f"Sec-WebSocket-Protocol: {protocol}")
        if origin:
            headers.append(f"Origin: {origin}")
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode())
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert status.startswith(b"HTTP/1.1 101"), status
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def send_text(self, text: str | bytes) -> None:
        self.send(frame(OP_TEXT, text.encode() if isinstance(text, str) else text))

    async def read_frame(self, timeout: float = WAIT) -> Received:
        head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        payload = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return Received(head[0] & 0x0F, payload, bool(head[0] & 0x80))

    async def read_json(self, timeout: float = WAIT) -> list[dict[str, Any]]:
        """The next text frame's replies (newline-delimited JSON)."""
        got = await self.read_frame(timeout)
        assert got.opcode == OP_TEXT, got
        return [json.loads(line) for line in got.payload.splitlines()]

    async def close_code(self, timeout: float = WAIT) -> int | None:
        """Read (and discard) frames until the server's close frame; its code."""
        while True:
            got = await self.read_frame(timeout)
            if got.opcode == OP_CLOSE:
                return got.close_code

    async def connect(self, user: str = "raw") -> dict[str, Any]:
        self.send_text(json.dumps({"id": 1, "connect": {"token": make_token(SECRET, user)}}))
        reply, = await self.read_json()
        return reply

    def close(self) -> None:
        self.writer.close()


@asynccontextmanager
async def raw_socket(port: int, **options: Any) -> AsyncIterator[RawSocket]:
    sock = await RawSocket.open(port, **options)
    try:
        yield sock
    finally:
        sock.close()


@asynccontextmanager
async def json_client(node: RunningNode, user: str = "raw", *, connect: bool = True,
                      headers: dict[str, str] | None = None,
                      ) -> AsyncIterator[ClientWebSocketResponse]:
    """An aiohttp WebSocket speaking the JSON protocol, connected as ``user``."""
    async with node.session.ws_connect(node.ws_url, headers=headers) as ws:
        if connect:
            await ws.send_json({"id": 1, "connect": {"token": make_token(SECRET, user)}})
            reply = await ws.receive_json(timeout=WAIT)
            assert "connect" in reply, reply
        yield ws


async def close_code_of(ws: ClientWebSocketResponse) -> int | None:
    """Read until the server closes ``ws``; the close code."""
    while True:
        message = await ws.receive(timeout=WAIT)
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return ws.close_code


async def command(ws: ClientWebSocketResponse, cmd: dict[str, Any]) -> dict[str, Any]:
    """Send one command and return the reply with its id (pushes are skipped)."""
    await ws.send_json(cmd)
    while True:
        message = await ws.receive(timeout=WAIT)
        assert message.type is WSMsgType.TEXT, message
        for line in message.data.splitlines():
            reply = json.loads(line)
            if reply.get("id") == cmd["id"]:
                return dict(reply)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_bytes() -> int:
    """This process's resident set size (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class ServedNode:
    """``python -m broker serve`` in a subprocess, with its output captured to a file."""

    process: asyncio.subprocess.Process
    port: int
    output_path: str

    def output(self) -> str:
        with open(self.output_path, errors="replace") as out:
            return out.read()


async def serve(config: dict[str, Any], tmp_dir: str, *, scheme: str = "http",
                ssl_context: Any = None, log_level: str = "debug") -> ServedNode:
    """Start ``chorus serve`` with ``config`` (a JSON file) and wait until /health answers.

    Raises AssertionError with the server's output if it does not come up in time.
    """
    import sys

    from aiohttp import ClientError, ClientSession

    from tests.ports import reserve_port

    # Outside the ephemeral range and locked against other test processes; the lock lasts
    # as long as this process (callers stop the node themselves; two nodes per session).
    port = reserve_port().port
    config = {**config, "http_server": {**config.get("http_server", {}), "port": port}}
    path = os.path.join(tmp_dir, "chorus.json")
    with open(path, "w") as out:
        json.dump(config, out)
    output_path = os.path.join(tmp_dir, "server.log")
    log = open(output_path, "wb")  # noqa: SIM115 - owned by the child for its lifetime
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broker", "serve", "-c", path, "--log-level", log_level,
        stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=os.getcwd())
    log.close()
    served = ServedNode(process, port, output_path)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    async with ClientSession() as session:
        while True:
            try:
                async with session.get(f"{scheme}://127.0.0.1:{port}/health",
                                       ssl=ssl_context) as response:
                    if response.status == 200:
                        return served
            except (ClientError, OSError):
                pass
            if process.returncode is not None or loop.time() > deadline:
                raise AssertionError(f"chorus serve did not come up:\n{served.output()}")
            await asyncio.sleep(0.05)
