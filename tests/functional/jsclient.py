"""centrifuge-js (npm, run by Node.js) as a test client over any of its transports.

``js_client(...)`` starts ``tests/js/client.mjs``, which drives one SDK ``Centrifuge`` from
commands on its stdin and reports every SDK event on its stdout (see the script). Needs
``node`` and ``tests/js/node_modules`` (``CHORUS_SETUP_TESTS=1 scripts/setup``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import WAIT, RunningNode

JS_DIR = Path(__file__).resolve().parent.parent / "js"
NODE = shutil.which("node")

needs_node = [
    pytest.mark.node,
    pytest.mark.skipif(NODE is None, reason="Node.js (`node`) is not installed"),
    pytest.mark.skipif(not (JS_DIR / "node_modules" / "eventsource").is_dir(),
                       reason="the npm packages are not installed: "
                              "run `cd tests/js && npm install`"),
]

Event = dict[str, Any]


def endpoints(node: RunningNode, transport: str) -> str | list[dict[str, str]]:
    """The SDK's endpoint option for ``transport`` on ``node``."""
    base = f"127.0.0.1:{node.port}"
    if transport == "websocket":
        return f"ws://{base}/connection/websocket"
    return [{"transport": transport, "endpoint": f"http://{base}/connection/{transport}"}]


class JsClient:
    """One SDK client in a Node process: ``call`` a command, ``expect`` an event."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._ids = itertools.count(1)
        self._seen: list[Event] = []  # events read but not yet expected

    async def _read(self) -> Event:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), WAIT * 2)
        if not line:
            assert self.process.stderr is not None
            error = await self.process.stderr.read()
            raise AssertionError(f"the Node script ended early: {error.decode()[-2000:]!r}")
        event: Event = json.loads(line)
        return event

    async def expect(self, kind: str, where: Callable[[Event], bool] = lambda e: True) -> Event:
        """The first event of ``kind`` matching ``where`` (earlier ones kept for later)."""
        for i, event in enumerate(self._seen):
            if event["event"] == kind and where(event):
                return self._seen.pop(i)
        while True:
            event = await self._read()
            if event["event"] == kind and where(event):
                return event
            self._seen.append(event)

    def pending(self, kind: str) -> list[Event]:
        """Events of ``kind`` read so far and not yet expected."""
        return [e for e in self._seen if e["event"] == kind]

    async def call(self, op: str, **params: Any) -> Event:
        """Run one command; returns its reply (``error`` in it if the SDK rejected it)."""
        assert self.process.stdin is not None
        command_id = next(self._ids)
        self.process.stdin.write(json.dumps({"id": command_id, "op": op, **params}).encode()
                                 + b"\n")
        await self.process.stdin.drain()
        return await self.expect("reply", lambda e: e["id"] == command_id)


@asynccontextmanager
async def js_client(node: RunningNode, transport: str, token: str, *,
                    protobuf: bool = False,
                    emulation_node: RunningNode | None = None) -> AsyncIterator[JsClient]:
    """A centrifuge-js client of ``node`` over ``transport`` (not yet connected), sending
    its emulation requests to ``emulation_node`` (default: ``node``)."""
    port = (emulation_node or node).port
    async with js_client_at(endpoints(node, transport), f"http://127.0.0.1:{port}/emulation",
                            token, protobuf=protobuf) as client:
        yield client


@asynccontextmanager
async def js_client_at(endpoint: str | list[dict[str, str]], emulation: str, token: str, *,
                       protobuf: bool = False) -> AsyncIterator[JsClient]:
    """A centrifuge-js client of ``endpoint`` (the SDK's first argument), not yet connected."""
    assert NODE is not None
    options = {"endpoints": endpoint, "token": token, "emulation": emulation,
               "protobuf": protobuf}
    process = await asyncio.create_subprocess_exec(
        NODE, str(JS_DIR / "client.mjs"), json.dumps(options), cwd=JS_DIR,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        yield JsClient(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
