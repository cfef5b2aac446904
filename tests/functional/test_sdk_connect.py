"""Connection lifecycle with the official Python SDK: connect, disconnect, server-initiated
disconnects and reconnects, pings, shutdown — over JSON and protobuf."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from centrifuge import ClientState

from broker.auth import make_token
from tests.functional.conftest import (
    SECRET,
    SdkClient,
    base_config,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)


async def test_connect_disconnect_loop_leaves_no_session(protobuf: bool) -> None:
    async with run_node(base_config()) as node:
        seen: set[str] = set()
        for _ in range(5):
            async with sdk_client(node, protobuf=protobuf, user="loop") as sdk:
                connected = await next_event(sdk.events.connected)
                assert connected.client == sdk.client_id
                assert sdk.client_id in node.node.connections
                await sdk.subscribe(f"loop-{len(seen)}")
                seen.add(sdk.client_id)
            disconnected = await next_event(sdk.events.disconnected)
            assert disconnected.code == 0  # disconnect() called
        assert len(seen) == 5, "every connection gets a fresh client id"
        await wait_until(lambda: not node.node.connections, "the node to forget every session")
        assert "loop" not in node.node.users
        assert await node.api("channels", {}) == (200, {"result": {"channels": {}}})


async def test_connect_reply_carries_session_details(protobuf: bool) -> None:
    async with run_node(base_config()) as node, \
            sdk_client(node, protobuf=protobuf, user="bob", name="probe",
                       version="9.9") as sdk:
        connected = await next_event(sdk.events.connected)
        assert connected.version == "chorus"
        conn = node.node.connections[sdk.client_id]
        assert conn.codec.binary is protobuf
        session = conn.session
        assert (session.user, session.name, session.version) == ("bob", "probe", "9.9")
        assert node.node.user_connections("bob") == [sdk.client_id]


async def test_many_clients_connect_at_once_and_all_receive(protobuf: bool) -> None:
    async with run_node(base_config()) as node, AsyncExitStack() as stack:
        clients: list[SdkClient] = await asyncio.gather(*(
            stack.enter_async_context(sdk_client(node, protobuf=protobuf, user=f"u{i}"))
            for i in range(20)))
        subs = await asyncio.gather(*(sdk.subscribe("lobby") for sdk in clients))
        assert await node.api("publish", {"channel": "lobby", "data": {"n": 1}}) == (200, {
            "result": {}})
        for sdk, (_, events) in zip(clients, subs, strict=True):
            pub = await next_event(events.publications)
            assert sdk.value(pub.data) == {"n": 1}
        _, info = await node.api("info", {})
        assert info["result"]["nodes"][0]["num_clients"] == 20


async def test_anonymous_connect_when_allowed(protobuf: bool) -> None:
    config = base_config(client={"allow_anonymous_connect_without_token": True},
                         channel={"without_namespace": {"allow_subscribe_for_anonymous": True}})
    async with run_node(config) as node, sdk_client(node, protobuf=protobuf, token="") as sdk:
        assert node.node.connections[sdk.client_id].session.user == ""
        _, events = await sdk.subscribe("public")
        await node.api("publish", {"channel": "public", "data": "hi"})
        assert sdk.value((await next_event(events.publications)).data) == "hi"


async def test_connect_without_token_is_refused_for_good(protobuf: bool) -> None:
    async with run_node(base_config()) as node, \
            sdk_client(node, protobuf=protobuf, token="", connect=False) as sdk:
        await sdk.client.connect()
        disconnected = await next_event(sdk.events.disconnected)
        assert 3500 <= disconnected.code < 4000, "a terminal code: the SDK must not retry"
        assert sdk.client.state is ClientState.DISCONNECTED


async def test_server_disconnect_is_terminal(protobuf: bool) -> None:
    async with run_node(base_config()) as node, \
            sdk_client(node, protobuf=protobuf, user="kicked") as sdk:
        assert await node.api("disconnect", {"user": "kicked"}) == (200, {"result": {}})
        disconnected = await next_event(sdk.events.disconnected)
        assert (disconnected.code, disconnected.reason) == (3503, "force disconnect")
        assert sdk.client.state is ClientState.DISCONNECTED
        await wait_until(lambda: "kicked" not in node.node.users, "the session to end")


async def test_server_disconnect_with_reconnect_code_reconnects(protobuf: bool) -> None:
    async with run_node(base_config()) as node, \
            sdk_client(node, protobuf=protobuf, user="bounce") as sdk:
        _, events = await sdk.subscribe("room")
        first = sdk.client_id
        status, _ = await node.api("disconnect", {
            "user": "bounce", "disconnect": {"code": 4001, "reason": "go away for a bit"}})
        assert status == 200
        connecting = await next_event(sdk.events.connecting)
        assert connecting.code == 0  # connect() itself
        connecting = await next_event(sdk.events.connecting)
        assert (connecting.code, connecting.reason) == (4001, "go away for a bit")
        await next_event(sdk.events.connected)
        await next_event(events.subscribed)  # the first subscribe
        await next_event(events.subscribed)  # resubscribed on the new connection
        assert sdk.client_id != first
        await node.api("publish", {"channel": "room", "data": 7})
        assert sdk.value((await next_event(events.publications)).data) == 7


async def test_server_pings_are_answered_and_keep_the_connection(protobuf: bool) -> None:
    config = base_config(client={"ping_interval": "250ms", "pong_timeout": "200ms"})
    async with run_node(config) as node, sdk_client(node, protobuf=protobuf) as sdk:
        conn = node.node.connections[sdk.client_id]
        # connect + at least three pongs, each inside the pong timeout
        await wait_until(lambda: conn.frames_in >= 4, "three pongs from the SDK")
        assert sdk.client.state is ClientState.CONNECTED
        assert sdk.events.connecting.qsize() == 1  # only the initial connect()


async def test_client_that_does_not_pong_is_disconnected() -> None:
    config = base_config(client={"ping_interval": "200ms", "pong_timeout": "100ms"})
    async with run_node(config) as node, node.session.ws_connect(node.ws_url) as ws:
        await ws.send_json({"id": 1, "connect": {"token": make_token(SECRET, "mute")}})
        reply = await ws.receive_json(timeout=5)
        assert reply["connect"]["pong"] is True
        while not ws.closed:  # pings arrive; never answer them
            await ws.receive(timeout=5)
        assert ws.close_code == 3012  # no pong


async def test_shutdown_tells_clients_to_reconnect(protobuf: bool) -> None:
    async with AsyncExitStack() as outer:  # the client outlives the node
        async with run_node(base_config()) as node:
            sdk = await outer.enter_async_context(sdk_client(node, protobuf=protobuf))
            await next_event(sdk.events.connecting)  # connect() itself
        connecting = await next_event(sdk.events.connecting)
        assert (connecting.code, connecting.reason) == (3001, "shutdown")
        assert sdk.client.state is ClientState.CONNECTING


async def test_anonymous_connection_tokens_can_be_disallowed(protobuf: bool) -> None:
    """client.disallow_anonymous_connection_tokens (Centrifugo v6): a token without a
    user is refused with 3507, terminal; a token with one still connects."""
    config = base_config(client={"disallow_anonymous_connection_tokens": True})
    async with run_node(config) as node:
        async with sdk_client(node, protobuf=protobuf, token=make_token(SECRET, ""),
                              connect=False) as anonymous:
            await anonymous.client.connect()
            disconnected = await next_event(anonymous.events.disconnected)
            assert (disconnected.code, disconnected.reason) == (3507, "permission denied")
            assert anonymous.client.state is ClientState.DISCONNECTED
        async with sdk_client(node, protobuf=protobuf, user="named") as named:
            assert named.client.state is ClientState.CONNECTED


async def test_a_socket_without_connect_closes_after_the_stale_delay() -> None:
    """client.stale_close_delay (Centrifugo v6, default 10s): 3502 "stale"."""
    async with run_node(base_config(client={"stale_close_delay": "200ms"})) as node:
        started = asyncio.get_running_loop().time()
        async with node.session.ws_connect(node.ws_url) as ws:
            message = await ws.receive(timeout=5)
            assert (ws.close_code, message.extra) == (3502, "stale")
        assert asyncio.get_running_loop().time() - started < 5
