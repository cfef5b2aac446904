"""Every limit, configured and hit over real sockets, answered with the protocol's code.

| limit                          | config                              | answer            |
|--------------------------------|-------------------------------------|-------------------|
| message size                   | websocket.message_size_limit        | close 1009        |
| channels per connection        | client.channel_limit                | error 106         |
| connections per user           | client.user_connection_limit        | close 3504        |
| connections per node           | client.connection_limit             | close 3504        |
| connect rate per IP            | client.connect_rate_limit_per_ip    | close 3013        |
| command rate per connection    | client.command_rate_limit           | close 3013        |
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack

from broker.auth import make_token
from broker.config import RateLimitConfig
from broker.connection.state import TokenBucket
from broker.transport.ratelimit import ConnectRateLimiter
from tests.functional.conftest import SECRET, WAIT, RunningNode, base_config, run_node
from tests.reliability.helpers import close_code_of, command, json_client

LIMIT = 4096


async def test_message_at_the_size_limit_passes_and_one_byte_more_is_1009() -> None:
    async with run_node(base_config(websocket={"message_size_limit": LIMIT})) as node, \
            json_client(node) as ws:
        head = '{"id":2,"ping":{"pad":"'
        exact = head + "x" * (LIMIT - len(head) - 3) + '"}}'
        assert len(exact.encode()) == LIMIT
        await ws.send_str(exact)
        assert await ws.receive_json(timeout=WAIT) == {"id": 2, "ping": {}}
        await ws.send_str(exact.replace('"x', '"xx', 1))  # LIMIT + 1 bytes
        assert await close_code_of(ws) == 1009
        assert await _still_serving(node)


async def test_channel_limit_answers_106_and_keeps_the_connection() -> None:
    async with run_node(base_config(client={"channel_limit": 3})) as node, \
            json_client(node) as ws:
        for n in range(3):
            reply = await command(ws, {"id": 10 + n, "subscribe": {"channel": f"c{n}"}})
            assert "subscribe" in reply, reply
        over = await command(ws, {"id": 20, "subscribe": {"channel": "c3"}})
        assert over["error"]["code"] == 106
        # Leaving one channel makes room again.
        await command(ws, {"id": 21, "unsubscribe": {"channel": "c0"}})
        again = await command(ws, {"id": 22, "subscribe": {"channel": "c3"}})
        assert "subscribe" in again, again


async def test_connections_per_user_over_the_limit_close_3504() -> None:
    async with run_node(base_config(client={"user_connection_limit": 2})) as node, \
            AsyncExitStack() as stack:
        for _ in range(2):
            await stack.enter_async_context(json_client(node, "bob"))
        async with json_client(node, "bob", connect=False) as third:
            await third.send_json({"id": 1, "connect": {"token": _token("bob")}})
            assert await close_code_of(third) == 3504
        async with json_client(node, "carol"):  # other users are not affected
            pass
        assert len(node.node.users["bob"]) == 2


async def test_connections_per_node_over_the_limit_close_3504() -> None:
    async with run_node(base_config(client={"connection_limit": 3})) as node, \
            AsyncExitStack() as stack:
        for n in range(3):
            await stack.enter_async_context(json_client(node, f"u{n}"))
        async with json_client(node, "u3", connect=False) as fourth:
            await fourth.send_json({"id": 1, "connect": {"token": _token("u3")}})
            assert await close_code_of(fourth) == 3504
        assert len(node.node.connections) == 3


async def test_connect_rate_per_ip_closes_3013_before_any_actor_exists() -> None:
    limit = {"enabled": True, "rate_per_second": 0.5, "burst": 3}
    async with run_node(base_config(client={"connect_rate_limit_per_ip": limit})) as node, \
            AsyncExitStack() as stack:
        for n in range(3):
            await stack.enter_async_context(json_client(node, f"u{n}"))
        actors = len(node.node.runtime.registry)
        async with node.session.ws_connect(node.ws_url) as refused:
            assert await close_code_of(refused) == 3013
        assert len(node.node.runtime.registry) == actors
        assert len(node.node.connections) == 3


async def test_command_rate_over_the_bucket_closes_3013_and_paced_commands_pass() -> None:
    limit = {"enabled": True, "rate_per_second": 200, "burst": 10}
    async with run_node(base_config(client={"command_rate_limit": limit})) as node:
        async with json_client(node) as paced:  # the connect spent one token
            for n in range(30):  # 30 commands, three times the burst, at ~100/s
                assert await command(paced, {"id": 2 + n, "ping": {}}) == {"id": 2 + n,
                                                                          "ping": {}}
                await asyncio.sleep(0.01)  # the pacing under test, not a wait for a state
        async with json_client(node) as flood:
            burst = "\n".join(json.dumps({"id": n, "ping": {}}) for n in range(2, 40))
            await flood.send_str(burst)  # 38 commands in one frame, one instant
            assert await close_code_of(flood) == 3013


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)  # 0.5 s -> one token
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped


def test_connect_limiter_is_per_address_and_bounded() -> None:
    limiter = ConnectRateLimiter(RateLimitConfig(enabled=True, rate_per_second=1.0, burst=2),
                                 max_addresses=100)
    assert [limiter.allow("10.0.0.1", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("10.0.0.2", 0.0)  # another address has its own bucket
    assert limiter.allow("10.0.0.1", 1.0)  # refilled one token
    for n in range(1000):  # a flood from many addresses never grows past the bound
        limiter.allow(f"192.168.{n // 256}.{n % 256}", 2.0)
    assert len(limiter) <= 100
    disabled = ConnectRateLimiter(RateLimitConfig(enabled=False, burst=1))
    assert all(disabled.allow("10.0.0.1", 0.0) for _ in range(10))


def _token(user: str) -> str:
    return make_token(SECRET, user)


async def _still_serving(node: RunningNode) -> bool:
    async with json_client(node) as ws:
        return await command(ws, {"id": 2, "ping": {}}) == {"id": 2, "ping": {}}
