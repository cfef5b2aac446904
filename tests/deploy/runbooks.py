"""Reading docs/runbooks/ and running their command blocks; raw clients the incidents use.

A page's sections are its ``## `` headings, named by their first word (``before``,
``signal``, ``confirm``, ``fix``, ``check``). Every fenced block whose info string is
exactly ``sh`` is run, in page order, by ``bash -euo pipefail`` with the environment the
runbooks' README describes; ``sh production`` blocks are shown, not run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import shlex
import socket
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "docs" / "runbooks"
SECTIONS = ("before", "signal", "confirm", "fix", "check")
BLOCK_TIMEOUT = 150.0


@dataclass(frozen=True)
class Block:
    page: str
    section: str
    line: int  # 1-based line of the opening fence
    text: str

    def where(self) -> str:
        return f"docs/runbooks/{self.page}:{self.line} ({self.section})"


def blocks(page: Path) -> list[Block]:
    """Every block of ``page`` that is run (info string ``sh``), with its section."""
    found: list[Block] = []
    section, fence, body, start = "", None, [], 0
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if fence is None and line.startswith("## "):
            section = line[3:].split()[0].lower()
        elif line.startswith("```"):
            if fence is None:
                fence, body, start = line[3:].strip(), [], number
            else:
                if fence == "sh":
                    found.append(Block(page.name, section, start, "\n".join(body)))
                fence = None
        elif fence is not None:
            body.append(line)
    return found


def cluster_env(state_dir: Path) -> dict[str, str]:
    """The variables ``chorus cluster env`` exports (the command operators run)."""
    import subprocess

    out = subprocess.run([sys.executable, "-m", "broker", "cluster", "env", "--state-dir",
                          str(state_dir)], capture_output=True, text=True, check=True,
                         cwd=REPO, timeout=30).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0]
    return env


def block_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without CHORUS_* (the blocks get theirs from ``extra``), with
    the venv's ``chorus`` first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHORUS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


async def run_block(block: Block, env: dict[str, str], cwd: Path) -> None:
    """Run one block; fail the test with its text and output when it fails."""
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", block.text, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), BLOCK_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        limit = f"{BLOCK_TIMEOUT:.0f} s"
        raise AssertionError(f"{block.where()} ran past {limit}:\n{block.text}") from None
    print(f"--- {block.where()}: exit {proc.returncode}\n{out.decode()}{err.decode()}")
    assert proc.returncode == 0, (
        f"{block.where()} failed (exit {proc.returncode}):\n{block.text}\n"
        f"--- stdout\n{out.decode()[-3000:]}\n--- stderr\n{err.decode()[-3000:]}")


# -- clients ----------------------------------------------------------------------------


def _frame(text: str) -> bytes:
    """A masked WebSocket text frame (a client must mask)."""
    payload, mask = text.encode(), os.urandom(4)
    size = len(payload)
    head = struct.pack("!BB", 0x81, 0x80 | size) if size < 126 else \
        struct.pack("!BBH", 0x81, 0x80 | 126, size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def never_reading_subscriber(port: int, channel: str) -> socket.socket:
    """A WebSocket client that connects, subscribes, reads the replies and then never
    reads again (a receive buffer of 4 KiB): a slow consumer. The caller closes it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    sock.sendall(_frame('{"id":1,"connect":{}}\n'
                        f'{{"id":2,"subscribe":{{"channel":"{channel}"}}}}'))
    seen = b""
    while b'"id":2' not in seen:
        chunk = sock.recv(4096)
        assert chunk, f"closed before subscribing: {seen[-300:]!r}"
        seen += chunk
    return sock


@dataclass
class Client:
    """A JSON-protocol client that answers the server's pings; ``reconnect`` makes it
    come back (after 0.1-0.4 s) whenever the server closes it, as the SDKs do."""

    session: aiohttp.ClientSession
    url: str
    channel: str
    reconnect: bool = False
    connects: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    ws: aiohttp.ClientWebSocketResponse | None = field(default=None, repr=False)

    async def connect(self) -> None:
        ws = await self.session.ws_connect(self.url, timeout=aiohttp.ClientWSTimeout(ws_close=2))
        await ws.send_str('{"id":1,"connect":{}}\n'
                          f'{{"id":2,"subscribe":{{"channel":"{self.channel}"}}}}')
        answered = ""
        while '"id":2' not in answered:
            message = await ws.receive(timeout=10)
            assert message.type is aiohttp.WSMsgType.TEXT, message
            answered += message.data
        self.ws, self.connects = ws, self.connects + 1

    async def serve(self) -> None:
        """Answer pings until closed; reconnect if asked to."""
        while True:
            if self.ws is None or self.ws.closed:
                if not self.reconnect:
                    return
                await asyncio.sleep(random.uniform(0.1, 0.4))  # the SDKs' jittered backoff
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError,
                                         AssertionError):
                    await self.connect()
                continue
            async for message in self.ws:
                if message.type is aiohttp.WSMsgType.TEXT and message.data == "{}":
                    await self.ws.send_str("{}")  # pong

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.serve())

    async def close(self) -> None:
        self.reconnect = False
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()


async def metric(session: aiohttp.ClientSession, node_url: str, name: str) -> float:
    """One unlabelled sample of ``name`` from a node's /metrics (0 when absent)."""
    from broker.admin_cli import parse_metrics

    async with session.get(f"{node_url}/metrics") as response:
        return parse_metrics(await response.text(), name, {}) or 0.0


def state_pid(state_dir: Path, name: str) -> int:
    """The pid ``state.json`` records for ``name`` now (a restart changes it)."""
    import json

    state: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    return next(int(e["pid"]) for e in state["processes"] if e["name"] == name)
