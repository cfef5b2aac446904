"""``engine.redis.replica_acks``: a publication is acknowledged only once replicas have it.

A real primary and a real replica. With the replica up, publishes succeed and the
replica holds every acknowledged publication. With the replica gone, a publish is still
stored and sent to the other nodes (they deliver it: no node may be the one with a
gap), but the publisher gets UnconfirmedPublish (an EngineError, so a temporary error
to API and client publishers) instead of an acknowledgement a failover could void.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import pytest
import redis.asyncio as aioredis

from broker.config import ConfigError, config_from_mapping
from broker.engine.base import UnconfirmedPublish
from broker.engine.redis import RedisEngine
from tests.contract.helpers import Recorder, eventually, start_linked
from tests.redis_server import RedisServer, redis_server
from tests.waiting import wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
def primary() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as engines:
        yield engines


async def replicated(primary: RedisServer) -> None:
    admin = aioredis.Redis(port=primary.port)
    try:
        async def linked() -> bool:
            info = await admin.info("replication")
            return info.get("connected_slaves", 0) >= 1 and \
                info.get("slave0", {}).get("state") == "online"
        await wait_until(linked, "the replica to be online", 20)
    finally:
        await admin.aclose()


async def engine_on(stack: AsyncExitStack, primary: RedisServer, recorder: Recorder | None = None,
                    **options: float) -> RedisEngine:
    engine = RedisEngine(primary.url, prefix="acks", io_timeout=2.0, **options)  # type: ignore[arg-type]
    rec = recorder or Recorder()
    engine.set_handlers(rec.on_publication, rec.on_control, rec.on_join, rec.on_leave)
    stack.push_async_callback(await start_linked(engine))
    return engine


async def test_with_the_replica_up_publications_are_acknowledged_and_on_the_replica(
        primary: RedisServer, stack: AsyncExitStack) -> None:
    with redis_server(extra=("--replicaof", "127.0.0.1", str(primary.port))) as replica:
        await replicated(primary)
        engine = await engine_on(stack, primary, replica_acks=1, replica_ack_timeout=2.0)
        for n in range(20):
            _, position = await engine.publish("c", b"%d" % n, history_size=100,
                                               history_ttl=60)
            assert position.offset == n + 1
        copy = aioredis.Redis(port=replica.port)
        try:
            assert await copy.xlen(engine.keys.stream("c")) == 20  # already there: WAITed
        finally:
            await copy.aclose()


async def test_without_the_replica_a_publish_is_stored_and_sent_but_not_acknowledged(
        primary: RedisServer, stack: AsyncExitStack) -> None:
    other_node = Recorder()
    with redis_server(extra=("--replicaof", "127.0.0.1", str(primary.port))) as replica:
        await replicated(primary)
        engine = await engine_on(stack, primary, replica_acks=1, replica_ack_timeout=0.3)
        other = await engine_on(stack, primary, other_node)
        await other.subscribe("c")
        await engine.publish("c", b"first", history_size=100, history_ttl=60)
        replica.process.kill()
        replica.process.wait()
    started = time.monotonic()
    with pytest.raises(UnconfirmedPublish) as caught:
        await engine.publish("c", b"second", history_size=100, history_ttl=60)
    assert time.monotonic() - started < 2.0  # the WAIT timeout, not the I/O timeout
    pub, position = caught.value.result
    assert (pub.data, position.offset) == (b"second", 2)
    pubs, top = await engine.history("c", limit=-1)
    assert [p.data for p in pubs] == [b"first", b"second"] and top.offset == 2
    await eventually(lambda: [p.data for _, p, _ in other_node.publications]
                     == [b"first", b"second"])


def test_replica_acks_with_cluster_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match=r"engine\.redis\.replica_acks"):
        config_from_mapping({"http_api": {"insecure": True}, "engine": {
            "type": "redis", "redis": {"cluster_address": ["127.0.0.1:7000"],
                                       "replica_acks": 1}}})


async def test_a_node_delivers_an_unconfirmed_publication_and_answers_an_error(
        primary: RedisServer) -> None:
    from tests.functional.conftest import base_config, run_node
    from tests.functional.test_multinode import connect, next_push

    mapping = base_config(
        client={"insecure": True},
        engine={"type": "redis", "redis": {"address": [primary.url], "prefix": "acks-node",
                                           "replica_acks": 1, "replica_ack_timeout": "300ms"}},
        channel={"without_namespace": {"history_size": 10, "history_ttl": "60s"}})
    with redis_server(extra=("--replicaof", "127.0.0.1", str(primary.port))) as replica:
        await replicated(primary)
        async with run_node(mapping) as node:
            ws = await connect(node, "news")
            status, body = await node.api("publish", {"channel": "news", "data": 1})
            assert status == 200 and body["result"]["offset"] == 1
            assert (await next_push(ws))["push"]["pub"]["offset"] == 1
            replica.process.kill()
            replica.process.wait()
            status, body = await node.api("publish", {"channel": "news", "data": 2})
            assert "error" in body and body["error"]["code"] == 100, body  # not acknowledged
            # ...yet stored and delivered here as on every other node: no silent gap.
            assert (await next_push(ws))["push"]["pub"]["offset"] == 2
            await ws.close()
