"""A failover after an unconfirmed publish never costs a silent gap.

The shape (README, Guarantees): with ``replica_acks``, a publication the replicas did
not confirm is stored on the old primary and delivered on every node (trackers advance
to its offset), but answered with error 100. The promoted replica never had it and
hands the same offset, in the same epoch, to the next publication, which is
acknowledged: every node used to drop that one as a duplicate, and recovery could not
see the gap (the positions match).

Real parts, in a fixed order: a primary, a replica, one Sentinel; two nodes, a
WebSocket subscriber on each. The replica is cut off (``REPLICAOF NO ONE``: nothing of
what follows reaches it, not even from a socket buffer), a publish through a node is
stored and delivered but not acknowledged, and the primary is SIGKILLed. A third
node that found the new primary first (the former replica, which has a replica of its
own) publishes there while the two nodes' links still look for it: an acknowledged
publication at the offset the nodes already hold, in the same epoch. Then the Sentinel
names the former replica (``SENTINEL REMOVE`` + ``MONITOR``) and the node publishes
more, acknowledged. Each subscriber must receive every acknowledged publication,
unless a resubscribe after it answered ``recovered: false`` (the explicit "you missed
something" of the protocol). Without the in-doubt check both lose the third node's
publication silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from broker.engine.redis import RedisEngine
from tests.contract.helpers import start_linked
from tests.redis_server import RedisServer, redis_server, sentinel_process
from tests.resync_client import ResyncingSubscriber
from tests.waiting import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SERVICE = "doubt"
PREFIX = "doubt"
CHANNEL = "news"


@dataclass
class Servers:
    primary: RedisServer
    replica: RedisServer
    sentinel: RedisServer


@pytest.fixture
def servers() -> Iterator[Servers]:
    with redis_server() as primary, \
            redis_server(extra=("--replicaof", "127.0.0.1", str(primary.port))) as replica, \
            sentinel_process(primary.port, SERVICE) as sentinel:
        yield Servers(primary, replica, sentinel)


async def linked(replica_port: int) -> None:
    client = aioredis.Redis(port=replica_port)
    try:
        async def up() -> bool:
            info = await client.info("replication")
            return bool(info.get("master_link_status") == "up")
        await wait_until(up, "the replica's link to be up", 20)
    finally:
        await client.aclose()


async def command(port: int, *args: Any) -> Any:
    client = aioredis.Redis(port=port)
    try:
        return await client.execute_command(*args)
    finally:
        await client.aclose()


async def subscribe(node: Any) -> ResyncingSubscriber:
    subscriber = ResyncingSubscriber(node.session, node.ws_url, CHANNEL)
    await subscriber.start()
    return subscriber


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as resources:
        yield resources


async def test_an_offset_reused_by_the_new_primary_is_never_a_silent_gap(
        servers: Servers, stack: AsyncExitStack) -> None:
    from tests.functional.conftest import base_config, run_node

    await linked(servers.replica.port)
    mapping = base_config(
        client={"insecure": True},
        engine={"type": "redis", "redis": {
            "sentinel_address": [f"127.0.0.1:{servers.sentinel.port}"],
            "sentinel_master_name": SERVICE, "prefix": PREFIX,
            "replica_acks": 1, "replica_ack_timeout": "300ms"}},
        channel={"without_namespace": {"history_size": 50, "history_ttl": "60s",
                                       "allow_recovery": True}})
    publisher = await stack.enter_async_context(run_node(mapping))
    other = await stack.enter_async_context(run_node(mapping))
    subscribers = [await subscribe(publisher), await subscribe(other)]
    readers = [asyncio.create_task(s.read()) for s in subscribers]
    acked: dict[int, float] = {}  # n -> when the API acknowledged it

    async def publish(n: int) -> dict[str, Any]:
        _, body = await publisher.api("publish", {"channel": CHANNEL, "data": {"n": n}})
        if "result" in body:
            acked[n] = time.monotonic()
        return dict(body)

    try:
        assert "result" in await publish(1)
        # The replica stops replicating (it gets a replica of its own, so it can
        # confirm writes once promoted): the next publication reaches only the primary.
        await command(servers.replica.port, "REPLICAOF", "NO", "ONE")
        spare = stack.enter_context(redis_server(extra=(
            "--replicaof", "127.0.0.1", str(servers.replica.port))))
        await linked(spare.port)
        body = await publish(2)
        assert body.get("error", {}).get("code") == 100, body  # not acknowledged...
        await wait_until(lambda: all(2 in s.received for s in subscribers),
                         "the unconfirmed publication on both nodes")  # ...yet delivered

        # The primary dies. A third node that found the new primary first publishes
        # there while both nodes' links still look for it: it gets the same offset.
        servers.primary.process.kill()
        servers.primary.process.wait()
        third = RedisEngine(servers.replica.url, prefix=PREFIX, replica_acks=1)
        stack.push_async_callback(await start_linked(third))
        _, position = await third.publish(CHANNEL, orjson.dumps({"n": 3}), history_size=50,
                                          history_ttl=60)
        acked[3] = time.monotonic()
        assert position.offset == 2  # n=2's offset, handed out again in the same epoch
        # Sentinel now names the former replica; the nodes follow and publish on.
        await command(servers.sentinel.port, "SENTINEL", "REMOVE", SERVICE)
        await command(servers.sentinel.port, "SENTINEL", "MONITOR", SERVICE, "127.0.0.1",
                      servers.replica.port, 1)
        n = 4
        while len(acked) < 6:  # n=1, n=3 and four more through the node
            await publish(n)
            n += 1
            assert n < 100, "publishing on the new primary keeps failing"

        def settled() -> bool:
            return all(s.silently_lost(acked) == [] for s in subscribers)

        with contextlib.suppress(AssertionError):  # the assertions below say what is missing
            await wait_until(settled, "every acknowledged publication received or "
                             "answered with recovered: false", 20)
        for subscriber in subscribers:
            assert subscriber.silently_lost(acked) == [], (subscriber.received,
                                                           subscriber.resyncs, acked)
            assert len(subscriber.received) == len(set(subscriber.received))
            assert subscriber.other == []
        # n=3 was lost to the nodes: they said so, with the explicit resubscribe.
        assert all(any(not ok for _, ok in s.resyncs) for s in subscribers)
    finally:
        for reader in readers:
            reader.cancel()
        for subscriber in subscribers:
            await subscriber.close()
