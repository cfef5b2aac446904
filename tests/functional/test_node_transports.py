"""centrifuge-js in Node over every bidirectional transport it has: WebSocket, HTTP
streaming (JSON and protobuf) and SSE with commands over ``/emulation`` — publish,
history recovery after a reconnect, presence and RPC, on real sockets."""

from __future__ import annotations

from typing import Any

import pytest

from broker import Chorus
from broker.auth import make_token
from tests.functional.conftest import SECRET, base_config, run_node, wait_until
from tests.functional.jsclient import js_client, needs_node

pytestmark = needs_node

TRANSPORTS = [("websocket", False), ("http_stream", False), ("http_stream", True),
              ("sse", False)]
IDS = ["websocket", "http_stream-json", "http_stream-protobuf", "sse"]


def config() -> dict[str, Any]:
    return base_config(
        http_stream={"enabled": True}, sse={"enabled": True},
        channel={"namespaces": [{
            "name": "chat", "history_size": 50, "history_ttl": "300s", "force_recovery": True,
            "presence": True, "allow_subscribe_for_client": True,
            "allow_publish_for_subscriber": True, "allow_presence_for_subscriber": True,
            "allow_history_for_subscriber": True}]})


def with_echo(chorus: Chorus) -> None:
    @chorus.rpc("echo")
    async def echo(ctx: dict[str, Any], data: bytes) -> bytes:
        return b'{"echo":%s,"user":"%s"}' % (data, ctx["user"].encode())


@pytest.mark.parametrize(("transport", "protobuf"), TRANSPORTS, ids=IDS)
async def test_publish_recovery_presence_and_rpc(transport: str, protobuf: bool) -> None:
    async with run_node(config(), with_echo) as node, \
            js_client(node, transport, make_token(SECRET, "js"), protobuf=protobuf) as js:
        await js.call("connect")
        connected = await js.expect("connected")
        assert connected["transport"] == transport
        conn = node.node.connections[connected["client"]]
        assert conn.link.name == transport and conn.codec.binary is protobuf
        assert conn.link.emulation is (transport != "websocket")

        await js.call("subscribe", channel="chat:room")
        subscribed = await js.expect("subscribed")
        assert subscribed["offset"] == 0

        # publish from the client (a command over /emulation for the emulated ones) ...
        assert "error" not in await js.call("publish", channel="chat:room", data={"n": 1})
        pub = await js.expect("publication")
        assert (pub["data"], pub["offset"]) == ({"n": 1}, 1)
        # ... and from the server API, fanned out by the shard to this transport's group.
        await node.api("publish", {"channel": "chat:room", "data": {"n": 2}})
        assert (await js.expect("publication"))["offset"] == 2

        presence = await js.call("presence", channel="chat:room")
        assert presence["clients"] == [connected["client"]]
        rpc = await js.call("rpc", method="echo", data={"q": "ping"})
        assert rpc["data"] == {"echo": {"q": "ping"}, "user": "js"}
        history = await js.call("history", channel="chat:room", limit=10)
        assert [p["offset"] for p in history["publications"]] == [1, 2]

        # A reconnect: publications made while the client is away are recovered.
        await js.call("disconnect")
        await js.expect("disconnected")
        await wait_until(lambda: connected["client"] not in node.node.connections)
        for n in (3, 4):
            await node.api("publish", {"channel": "chat:room", "data": {"n": n}})
        await js.call("connect")
        again = await js.expect("connected")
        assert again["transport"] == transport and again["client"] != connected["client"]
        resubscribed = await js.expect("subscribed")
        assert resubscribed["wasRecovering"] and resubscribed["recovered"]
        recovered = [await js.expect("publication") for _ in range(2)]
        assert [(p["data"]["n"], p["offset"]) for p in recovered] == [(3, 3), (4, 4)]


@pytest.mark.parametrize("transport", ["http_stream", "sse"])
async def test_a_dropped_stream_reconnects_and_recovers(transport: str) -> None:
    """The stream breaks under the SDK (no goodbye): the server notices the socket's end
    and drops the session; the SDK reconnects over the same transport and recovers."""
    async with run_node(config()) as node, \
            js_client(node, transport, make_token(SECRET, "js")) as js:
        await js.call("connect")
        first = (await js.expect("connected"))["client"]
        await js.call("subscribe", channel="chat:lobby")
        await js.expect("subscribed")
        await node.api("publish", {"channel": "chat:lobby", "data": {"n": 1}})
        assert (await js.expect("publication"))["offset"] == 1

        await js.call("drop")
        await wait_until(lambda: first not in node.node.connections)
        await node.api("publish", {"channel": "chat:lobby", "data": {"n": 2}})
        again = await js.expect("connected")
        assert again["client"] != first and again["transport"] == transport
        resubscribed = await js.expect("subscribed", lambda e: e["wasRecovering"])
        assert resubscribed["recovered"]
        assert (await js.expect("publication"))["offset"] == 2


async def test_server_disconnect_reaches_an_emulated_client_with_its_code() -> None:
    """An HTTP stream has no close code: the disconnect push carries it (3503 stops the
    SDK reconnecting, as over WebSocket)."""
    async with run_node(config()) as node, \
            js_client(node, "http_stream", make_token(SECRET, "bob")) as js:
        await js.call("connect")
        await js.expect("connected")
        status, _ = await node.api("disconnect", {"user": "bob"})
        assert status == 200
        disconnected = await js.expect("disconnected")
        assert disconnected["code"] == 3503
        await wait_until(lambda: not node.node.connections)
