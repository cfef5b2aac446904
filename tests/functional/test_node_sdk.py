"""The browser-side SDK: centrifuge-js (npm, run by Node.js) against a live node, over JSON
and protobuf. Needs ``node`` and ``tests/js/node_modules`` (``cd tests/js && npm install``;
``CHORUS_SETUP_TESTS=1 scripts/setup`` does it)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from broker.auth import make_token
from tests.functional.conftest import SECRET, WAIT, base_config, run_node

JS_DIR = Path(__file__).resolve().parent.parent / "js"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(NODE is None, reason="Node.js (`node`) is not installed"),
    pytest.mark.skipif(not (JS_DIR / "node_modules" / "centrifuge").is_dir(),
                       reason="the centrifuge npm SDK is not installed: "
                              "run `cd tests/js && npm install`"),
]


async def read_event(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), WAIT * 2)
    if not line:
        assert process.stderr is not None
        error = await process.stderr.read()
        raise AssertionError(f"the Node script ended early: {error.decode()!r}")
    event: dict[str, Any] = json.loads(line)
    return event


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_centrifuge_js_receives_a_publication(protobuf: bool) -> None:
    config = base_config(channel={"without_namespace": {
        "history_size": 10, "history_ttl": "60s"}})
    async with run_node(config) as node:
        assert NODE is not None
        args = [str(JS_DIR / "subscribe.mjs"), node.ws_url, "updates",
                make_token(SECRET, "js-user")]
        if protobuf:
            args.append("--protobuf")
        process = await asyncio.create_subprocess_exec(
            NODE, *args, cwd=JS_DIR, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            subscribed = await read_event(process)
            assert subscribed["event"] == "subscribed" and subscribed["channel"] == "updates"
            assert subscribed["client"] in node.node.connections
            conn = node.node.connections[subscribed["client"]]
            assert conn.codec.binary is protobuf, "the SDK speaks the protocol asked for"
            session = conn.session
            assert (session.user, session.name) == ("js-user", "node-check")

            payload = {"text": "hello from chorus", "n": [1, 2.5, None], "ok": True}
            status, _ = await node.api("publish", {"channel": "updates", "data": payload})
            assert status == 200
            publication = await read_event(process)
            assert publication == {"event": "publication", "channel": "updates",
                                   "data": payload, "offset": 1, "info": None}
            assert await asyncio.wait_for(process.wait(), WAIT) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
