"""The browser-side SDK: centrifuge-js (npm, run by Node.js) against a live node, over JSON
and protobuf: a publication; headers emulation, ``getState`` and channel compaction.
Needs ``node`` and ``tests/js/node_modules`` (``cd tests/js && npm install``;
``CHORUS_SETUP_TESTS=1 scripts/setup`` does it)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from broker import Chorus
from broker.auth import make_token
from broker.connection.outbox import Outbox
from broker.protocol import JSON_CODEC, PROTOBUF_CODEC
from broker.shard import batch as shard_batch
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


def headers_rpc(chorus: Chorus) -> None:
    @chorus.rpc("headers")
    async def headers(ctx: dict[str, Any], data: bytes) -> bytes:
        return json.dumps(ctx["headers"]).encode()


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_centrifuge_js_headers_get_state_and_compaction(
        protobuf: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """centrifuge-js 5.8: its ``headers`` reach RPC handlers; ``getState`` with an empty
    epoch recovers from offset 0; over JSON the channel compaction it offers is taken,
    and it routes the id-only pushes to its subscription.

    Not over protobuf: there centrifuge-js 5.8 decodes the int64 ids to long.js objects
    and matches a push's id to its subscription's with ``===`` (object identity), so a
    compacted push never finds its subscription and is dropped. Centrifugo PRO sends the
    same bytes; the README says to keep ``allow_channel_compaction`` off where its
    protobuf clients subscribe, and this test does."""
    pushes: list[dict[str, Any]] = []
    original, original_many = Outbox.push, Outbox.push_many
    original_broadcast = shard_batch.broadcast

    inside: list[bool] = []  # in broadcast: its fallbacks to push are recorded there

    def record(frame: bytes, binary: bool) -> None:
        if inside:
            return
        for reply in (PROTOBUF_CODEC if binary else JSON_CODEC).decode_replies(frame):
            if "pub" in reply.get("push", {}):
                pushes.append(reply["push"])

    def push(self: Outbox, frame: bytes, *args: Any, **kwargs: Any) -> Any:
        record(frame, self.binary)
        return original(self, frame, *args, **kwargs)

    def push_many(self: Outbox, frames: list[bytes], *args: Any) -> Any:
        for frame in frames:
            record(frame, self.binary)
        return original_many(self, frames, *args)

    def broadcast(outboxes: Any, frame: bytes, *args: Any) -> Any:
        outboxes = list(outboxes)
        for outbox in outboxes:  # what each subscriber is sent, as push records it
            record(frame, outbox.binary)
        inside.append(True)
        try:
            return original_broadcast(outboxes, frame, *args)
        finally:
            inside.pop()

    monkeypatch.setattr(Outbox, "push", push)
    monkeypatch.setattr(Outbox, "push_many", push_many)
    monkeypatch.setattr(shard_batch, "broadcast", broadcast)
    config = base_config(channel={"namespaces": [{
        "name": "room", "allow_subscribe_for_client": True,
        "allow_channel_compaction": not protobuf,
        "history_size": 10, "history_ttl": "60s", "force_recovery": True}]})
    async with run_node(config, setup=headers_rpc) as node:
        for n in (1, 2):
            await node.api("publish", {"channel": "room:js", "data": {"n": n}})
        assert NODE is not None
        args = [str(JS_DIR / "session.mjs"), node.ws_url, "room:js",
                make_token(SECRET, "js-user"), "3"]
        if protobuf:
            args.append("--protobuf")
        process = await asyncio.create_subprocess_exec(
            NODE, *args, cwd=JS_DIR, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            seen: dict[str, list[dict[str, Any]]] = {}
            while len(seen.get("publication", [])) < 3:
                event = await read_event(process)
                seen.setdefault(event["event"], []).append(event)
                if event["event"] == "subscribed":
                    await node.api("publish", {"channel": "room:js", "data": {"n": 3}})
            assert await asyncio.wait_for(process.wait(), WAIT) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert seen["rpc"] == [{"event": "rpc", "data": {"x-tenant": "acme"}}]
        assert len(seen["get_state"]) == 1
        assert seen["subscribed"] == [{"event": "subscribed", "recovered": True,
                                       "wasRecovering": True}]
        assert [(e["data"]["n"], e["offset"]) for e in seen["publication"]] == [
            (1, 1), (2, 2), (3, 3)]
        # Publication 3 went out live (1 and 2 came in the subscribe result): by id
        # where compaction was negotiated.
        [live] = pushes
        if protobuf:
            assert live["channel"] == "room:js" and "id" not in live
        else:
            assert "channel" not in live and live["id"] > 0
