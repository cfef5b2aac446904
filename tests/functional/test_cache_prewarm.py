"""Prewarm: a crashed-and-restarted shard reloads its hottest channels before serving
them (the first read is an L1 hit, the warm-up is timed), and a new node warms the
channels the previous one saved as hot in the engine."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import pytest

from broker.cache.layer import CacheLayer
from broker.config import CacheConfig, ChannelOptions
from broker.engine.memory import MemoryEngine
from tests.contract.helpers import eventually
from tests.functional.conftest import RunningNode, base_config, run_node

SHARDS = 2


def same_shard(count: int) -> list[str]:
    """``count`` channel names of namespace hh that hash to shard 0."""
    names = (f"hh:c{i}" for i in range(1000))
    return [n for n in names if zlib.crc32(n.encode()) % SHARDS == 0][:count]


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    config = base_config(
        channel={"namespaces": [{"name": "hh", "history_size": 5, "history_ttl": "60s"}]},
        chorus={"shard_count": SHARDS}, cache={"prewarm": 2},
        admin={"allow_crash_actor": True, "insecure": True})
    async with run_node(config) as running:
        yield running


async def _history(node: RunningNode, channel: str) -> list[int]:
    _, reply = await node.api("history", {"channel": channel, "limit": -1})
    return [p["offset"] for p in reply["result"]["publications"]]


async def test_restarted_shard_serves_its_hottest_channels_from_l1(node: RunningNode) -> None:
    hot, warm, cold = same_shard(3)
    for channel, reads in ((hot, 5), (warm, 3), (cold, 0)):
        await node.api("publish", {"channel": channel, "data": 1})
        await node.api("publish", {"channel": channel, "data": 2})
        for _ in range(reads):
            await _history(node, channel)
    cache = node.node.cache
    warmed_before = len(cache.warm.history)
    node.node.runtime.crash_actor(node.node.shard_ids[0])
    await eventually(lambda: len(cache.warm.history) > warmed_before)
    assert cache.caches[0].top(hot) is not None and cache.caches[0].top(cold) is None
    before = cache.statistics().cache
    assert await _history(node, hot) == [1, 2]  # the first read after the restart
    assert await _history(node, warm) == [1, 2]
    after = cache.statistics().cache
    assert (after.hits - before.hits, after.misses - before.misses) == (2, 0)
    assert await _history(node, cold) == [1, 2]  # not hot enough: loaded on its miss
    assert cache.statistics().cache.misses == after.misses + 1
    _, reply = await node.api("cache_stats", {})
    last = reply["result"]["prewarm"]["last"]
    assert (last["shard"], last["channels"], last["failed"]) == (0, 2, 0)
    assert last["ms"] > 0


async def test_a_new_node_warms_what_the_previous_one_saved_as_hot() -> None:
    engine = MemoryEngine()
    await engine.start()
    options = ChannelOptions(history_size=3, history_ttl=60.0)
    config = CacheConfig(prewarm=4)

    def shard_of(channel: str) -> int:
        return zlib.crc32(channel.encode()) % SHARDS

    def layer() -> CacheLayer:
        made = CacheLayer(engine, config, SHARDS, shard_of, lambda _: None,
                          options=lambda _: options)
        for index in range(SHARDS):  # what each shard actor does as it starts
            made.attach(made.new_l1(index))
        return made

    old = layer()
    channels = [f"ch{i}" for i in range(6)]
    for channel in channels:
        pub, position = await engine.publish(channel, b"1", history_size=3, history_ttl=60)
        old.published(channel, pub, position, options)
    await old.history("ch0", options, limit=-1)
    await old.flush_all()  # graceful shutdown: saves the hot list

    new = layer()
    for index in range(SHARDS):
        new.warm.start(index)
    pubs, _ = await new.history("ch0", options, limit=-1)  # waits for its warm-up
    assert [p.offset for p in pubs] == [1]
    await eventually(lambda: len(new.warm.history) == SHARDS)
    assert sum(w.channels for w in new.warm.history) == len(channels)
    stats = new.statistics()
    assert (stats.cache.hits, stats.cache.misses, stats.cache.entries) == (1, 0, 6)
    await engine.close()
