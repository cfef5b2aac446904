"""The Redis Stream consumer against a real redis-server and real SDK clients.

Each test uses its own stream names in the session's private redis-server; entries are
added the way an application does (``XADD <stream> * method ... payload ...``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.functional.conftest import WAIT, base_config, next_event, run_node, sdk_client
from tests.waiting import wait_until

_names = itertools.count(1)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def streams() -> list[str]:
    n = next(_names)
    return [f"rs{n}:a", f"rs{n}:b"]


def consumer(redis_url: str, streams: list[str], **options: Any) -> dict[str, Any]:
    return {"name": "streams", "enabled": True, "type": "redis_stream",
            "redis_stream": {"address": [redis_url], "streams": streams,
                             "consumer_group": "chorus", "visibility_timeout": "1s",
                             **options}}


async def add(redis: aioredis.Redis, stream: str, method: str, payload: Any) -> str:
    entry = await redis.xadd(stream, {"method": method, "payload": json.dumps(payload)})
    return str(entry.decode())


async def received(events: Any, count: int) -> list[Any]:
    return [(await next_event(events.publications)).data for _ in range(count)]


async def pending(redis: aioredis.Redis, stream: str) -> int:
    summary = await redis.xpending(stream, "chorus")
    return int(summary["pending"])


async def test_entries_reach_subscribers_in_order_and_are_acknowledged(
        redis_url: str, redis: aioredis.Redis, streams: list[str]) -> None:
    first, second = streams
    # added before any node ran (the group starts at the stream's beginning), so it is
    # consumed at once, before anyone subscribes: only the counters show it
    await add(redis, first, "publish", {"channel": "early", "data": {"n": -1}})
    config = base_config(consumers=[consumer(redis_url, streams)])
    async with run_node(config) as running, sdk_client(running) as client:
        _, news = await client.subscribe("news")
        _, other = await client.subscribe("other")
        for n in range(20):
            await add(redis, first, "publish", {"channel": "news", "data": {"n": n}})
        await add(redis, second, "broadcast", {"channels": ["other"], "data": {"x": 1}})
        assert [d["n"] for d in await received(news, 20)] == list(range(20))
        assert (await received(other, 1)) == [{"x": 1}]
        stats = running.node.consumers.get("streams")
        await wait_until(lambda: stats.processed == 22, "every entry processed", timeout=WAIT)
        assert await pending(redis, first) == 0 and await pending(redis, second) == 0
        assert stats.owned == set(streams) and stats.redeliveries == 0


async def test_entries_that_can_never_be_published_are_acknowledged_and_counted(
        redis_url: str, redis: aioredis.Redis, streams: list[str]) -> None:
    stream = streams[0]
    config = base_config(consumers=[consumer(redis_url, [stream])])
    async with run_node(config) as running, sdk_client(running) as client:
        _, news = await client.subscribe("news")
        await redis.xadd(stream, {"payload": "{}"})  # no method field
        await add(redis, stream, "publish", {"data": 1})  # no channel
        await redis.xadd(stream, {"method": "publish", "payload": "not json"})
        await add(redis, stream, "publish", {"channel": "news", "data": {"n": 1}})
        assert (await received(news, 1)) == [{"n": 1}]
        stats = running.node.consumers.get("streams")
        await wait_until(lambda: stats.invalid == 3, "three entries dropped", timeout=WAIT)
        assert await pending(redis, stream) == 0


async def test_a_dead_consumers_pending_entries_are_reclaimed_in_order_once(
        redis_url: str, redis: aioredis.Redis, streams: list[str]) -> None:
    """Another node read three entries, published the first and died before XACK while
    holding the stream: once its lease expires this node takes the stream, claims the
    three (XAUTOCLAIM), publishes them in order, and the first is suppressed by its
    idempotency key, so the subscriber sees each once."""
    stream = streams[0]
    await redis.xgroup_create(stream, "chorus", id="0", mkstream=True)
    ids = [await add(redis, stream, "publish", {"channel": "news", "data": {"n": n}})
           for n in range(3)]
    await redis.xreadgroup("chorus", "dead-node", {stream: ">"}, count=10)
    assert await pending(redis, stream) == 3
    owner = f"chorus:stream-owner:chorus:{stream}"
    await redis.set(owner, "dead-node", px=60_000)  # its lease, still running
    config = base_config(consumers=[consumer(redis_url, [stream])])
    async with run_node(config) as running, sdk_client(running) as client:
        _, news = await client.subscribe("news")
        stats = running.node.consumers.get("streams")
        # what the dead node did before dying: entry 0 published under its derived key
        await running.node.publish("news", b'{"n":0}', idempotency_key=f"stream:{stream}:{ids[0]}")
        await add(redis, stream, "publish", {"channel": "news", "data": {"n": 3}})
        assert (await received(news, 1)) == [{"n": 0}]
        assert stats.owned == set() and await pending(redis, stream) == 3  # not ours yet
        await redis.pexpire(owner, 10)  # the lease runs out
        assert [d["n"] for d in await received(news, 3)] == [1, 2, 3]
        await wait_until(lambda: stats.processed == 4, "every entry processed", timeout=WAIT)
        assert stats.redeliveries == 1 and await pending(redis, stream) == 0
        assert news.publications.empty()


async def test_a_node_that_stops_gives_its_streams_back_at_once(
        redis_url: str, redis: aioredis.Redis, streams: list[str]) -> None:
    config = base_config(consumers=[consumer(redis_url, streams, visibility_timeout="60s")])
    owners = [f"chorus:stream-owner:chorus:{stream}" for stream in streams]
    async with run_node(config) as running:
        stats = running.node.consumers.get("streams")
        await wait_until(lambda: stats.owned == set(streams), "both streams taken",
                         timeout=WAIT)
        assert await redis.exists(*owners) == 2
    # a graceful stop released the leases: another node need not wait 60 s
    assert await redis.exists(*owners) == 0
