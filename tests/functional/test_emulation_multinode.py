"""An emulated session across two nodes on one real Redis, as behind a load balancer
without sticky sessions: the stream is held by node A while every ``/emulation`` request
of the client lands on node B, which forwards it to A through the engine."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from broker import Chorus
from broker.auth import make_token
from tests.functional.conftest import SECRET, RunningNode, base_config, run_node, wait_until
from tests.functional.jsclient import js_client, needs_node

pytestmark = [pytest.mark.redis, *needs_node]


def config(redis_url: str, prefix: str) -> dict[str, Any]:
    return base_config(
        http_stream={"enabled": True}, sse={"enabled": True},
        engine={"type": "redis", "redis": {"address": [redis_url], "prefix": prefix}},
        channel={"namespaces": [{
            "name": "chat", "history_size": 20, "history_ttl": "60s", "presence": True,
            "allow_subscribe_for_client": True, "allow_publish_for_subscriber": True,
            "allow_presence_for_subscriber": True}]})


def with_echo(chorus: Chorus) -> None:
    @chorus.rpc("echo")
    async def echo(ctx: dict[str, Any], data: bytes) -> bytes:
        return data


def knows(node: RunningNode, other: RunningNode) -> bool:
    return any(info["uid"] == other.node.uid for info in node.node.directory.alive(time.time()))


@pytest.fixture
async def two_nodes(redis_url: str) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    prefix = f"emu-{uuid.uuid4().hex[:8]}"  # a fresh history for every test
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(run_node(config(redis_url, prefix), with_echo))
        b = await stack.enter_async_context(run_node(config(redis_url, prefix), with_echo))
        await wait_until(lambda: knows(b, a) and knows(a, b))  # heartbeats crossed
        yield a, b


@pytest.mark.parametrize("transport", ["http_stream", "sse"])
async def test_commands_posted_to_the_other_node_reach_the_session(
        two_nodes: tuple[RunningNode, RunningNode], transport: str) -> None:
    a, b = two_nodes
    async with js_client(a, transport, make_token(SECRET, "roamer"), emulation_node=b) as js:
        await js.call("connect")  # the connect rides in the stream's own request, on A
        connected = await js.expect("connected")
        client = connected["client"]
        assert client in a.node.connections and client not in b.node.connections

        await js.call("subscribe", channel="chat:x")  # from here on: POSTs to B
        await js.expect("subscribed")
        assert "error" not in await js.call("publish", channel="chat:x", data={"via": "b"})
        pub = await js.expect("publication")
        assert (pub["data"], pub["offset"]) == ({"via": "b"}, 1)
        assert (await js.call("presence", channel="chat:x"))["clients"] == [client]
        assert (await js.call("rpc", method="echo", data={"q": 1}))["data"] == {"q": 1}

        assert b.node.emulation_routes["forwarded"] >= 4
        assert a.node.emulation_routes["local"] == 0, "every command went through B"
        # A publication on B reaches the client on A as usual.
        await b.api("publish", {"channel": "chat:x", "data": {"from": "api"}})
        assert (await js.expect("publication"))["offset"] == 2


async def test_a_request_for_a_node_that_is_gone_is_404(
        two_nodes: tuple[RunningNode, RunningNode]) -> None:
    a, _ = two_nodes
    url = f"http://127.0.0.1:{a.port}/emulation"
    async with a.session.post(url, json={"node": "no-such-node", "session": "no-such-node.x",
                                         "data": '{"id":1,"ping":{}}'}) as response:
        assert response.status == 404
    assert a.node.emulation_routes["unknown_node"] == 1
