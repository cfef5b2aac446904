"""Eviction under ``cache.memory_budget`` end to end on a node, for ``lru`` and ``lfu``:
many channels with history overflow a small per-shard budget, the L1 bytes reported by
the ``cache_stats`` API stay under it, evictions count up, and every channel's history
(evicted ones served by the engine) stays exactly the engine's. And one hot channel of
big publications, alone bigger than the budget: it is trimmed from its oldest end, not
let past the budget."""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional.conftest import RunningNode, base_config, run_node
from tests.waiting import wait_until

SHARDS = 4
BUDGET = 3000  # bytes per shard: two channels of HISTORY publications, not three
HISTORY = 5
CHANNELS = [f"bud:c{i:02}" for i in range(40)]
PAD = "x" * 100


def _config(eviction: str) -> dict[str, Any]:
    namespace = {"name": "bud", "history_size": HISTORY, "history_ttl": "60s"}
    return base_config(channel={"namespaces": [namespace]}, chorus={"shard_count": SHARDS},
                       cache={"eviction": eviction, "memory_budget": BUDGET, "prewarm": 0})


async def _stats(node: RunningNode) -> dict[str, Any]:
    status, reply = await node.api("cache_stats", {})
    assert status == 200, reply
    stats: dict[str, Any] = reply["result"]
    return stats


async def _assert_under_budget(node: RunningNode) -> dict[str, Any]:
    stats = await _stats(node)
    assert 0 < stats["bytes"] <= BUDGET * SHARDS
    for cache in node.node.cache.caches:  # the budget is per shard
        assert cache.statistics().bytes <= BUDGET
    return stats


async def _history(node: RunningNode, channel: str, **params: Any) -> dict[str, Any]:
    status, reply = await node.api("history", {"channel": channel, **params})
    assert status == 200, reply
    result: dict[str, Any] = reply["result"]
    return result


async def _assert_engine_history(node: RunningNode, channel: str) -> None:
    """The API's history of ``channel``: the engine's, with the data published."""
    result = await _history(node, channel, limit=-1)
    pubs, top = await node.node.engine.history(channel, limit=-1, history_ttl=60.0)
    assert (result["offset"], result["epoch"]) == (top.offset, top.epoch)
    assert [p["offset"] for p in result["publications"]] == list(range(1, HISTORY + 1))
    assert [p["data"] for p in result["publications"]] == [
        {"channel": channel, "i": i, "pad": PAD} for i in range(HISTORY)]
    assert [p["offset"] for p in result["publications"]] == [p.offset for p in pubs]
    since = {"offset": 2, "epoch": top.epoch}
    after = await _history(node, channel, limit=-1, since=since)
    assert [p["offset"] for p in after["publications"]] == list(range(3, HISTORY + 1))
    newest = await _history(node, channel, limit=2, reverse=True)
    assert [p["offset"] for p in newest["publications"]] == [HISTORY, HISTORY - 1]


@pytest.mark.parametrize("eviction", ["lru", "lfu"])
async def test_l1_stays_under_budget_and_evicted_history_is_the_engines(
        eviction: str) -> None:
    async with run_node(_config(eviction)) as node:
        for channel in CHANNELS:  # write-through: every channel enters L1 on publish
            for i in range(HISTORY):
                data = {"channel": channel, "i": i, "pad": PAD}
                _, reply = await node.api("publish", {"channel": channel, "data": data})
                assert reply["result"]["offset"] == i + 1
            await _assert_under_budget(node)
        stats = await _assert_under_budget(node)
        assert stats["evictions"] >= len(CHANNELS) - 2 * SHARDS  # at most 2 fit per shard
        assert stats["entries"] <= 2 * SHARDS

        cache = node.node.cache
        evicted = [c for c in CHANNELS
                   if cache.caches[node.node.shard_of(c)].top(c) is None]
        assert evicted
        misses = (await _stats(node))["misses"]
        await _assert_engine_history(node, evicted[0])
        assert (await _stats(node))["misses"] > misses  # not from L1: the engine answered

        for channel in CHANNELS:  # every read reloads and evicts again
            await _assert_engine_history(node, channel)
            await _assert_under_budget(node)
        assert (await _stats(node))["evictions"] > stats["evictions"]


@pytest.mark.parametrize("eviction", ["lru", "lfu"])
async def test_the_eviction_policy_picks_the_victims(eviction: str) -> None:
    """A channel read often, then left while its shard's other channels are each read
    once: LFU keeps it (most uses), LRU evicts it (least recent)."""
    async with run_node(_config(eviction)) as node:
        for channel in CHANNELS:
            for i in range(HISTORY):
                data = {"channel": channel, "i": i, "pad": PAD}
                await node.api("publish", {"channel": channel, "data": data})
        shard_of = node.node.shard_of
        favourite, *others = [c for c in CHANNELS if shard_of(c) == shard_of(CHANNELS[0])]
        assert len(others) >= 3
        for _ in range(10):
            await _assert_engine_history(node, favourite)
        for channel in others:
            await _assert_engine_history(node, channel)
            await _assert_under_budget(node)
        cache = node.node.cache.caches[shard_of(favourite)]
        assert (cache.top(favourite) is not None) == (eviction == "lfu")
        await _assert_engine_history(node, favourite)  # correct either way


# -- one hot channel bigger than the budget (the channel being filled is bounded too) --

TINY = 10_000  # bytes per shard
BIG = 3000  # a publication's padding: three fill the budget
HOT_HISTORY = 100


def _hot_config(policy: str) -> dict[str, Any]:
    namespace = {"name": "hot", "history_size": HOT_HISTORY, "history_ttl": "60s",
                 "cache_policy": policy, "cache_flush_delay": "50ms"}
    return base_config(channel={"namespaces": [namespace]}, chorus={"shard_count": 2},
                       cache={"memory_budget": TINY, "prewarm": 0})


def _hot_data(i: int, size: int = BIG) -> dict[str, Any]:
    return {"i": i, "pad": "h" * size}


async def _assert_hot_history(node: RunningNode, channel: str, count: int) -> None:
    """History through the node: complete and exact, whoever answers each read."""
    result = await _history(node, channel, limit=-1)
    assert [p["offset"] for p in result["publications"]] == list(range(1, count + 1))
    assert [p["data"]["i"] for p in result["publications"]] == list(range(count))
    sizes = [len(p["data"]["pad"]) for p in result["publications"]]
    assert sizes == [BIG] * 40 + [2 * TINY] + [10] * (count - 41)
    epoch = result["epoch"]
    after = await _history(node, channel, limit=-1, since={"offset": 5, "epoch": epoch})
    assert [p["offset"] for p in after["publications"]] == list(range(6, count + 1))
    newest = await _history(node, channel, limit=2, reverse=True)
    assert [p["offset"] for p in newest["publications"]] == [count, count - 1]
    older = await _history(node, channel, limit=3, reverse=True,
                           since={"offset": count - 1, "epoch": epoch})
    assert [p["offset"] for p in older["publications"]] == [count - 2, count - 3, count - 4]
    _, top = await node.node.engine.history(channel, limit=0, history_ttl=60.0)
    assert (result["offset"], result["epoch"]) == (top.offset, top.epoch)


@pytest.mark.parametrize("policy", ["write_through", "write_behind"])
async def test_one_hot_channel_stays_within_a_tiny_budget(policy: str) -> None:
    """Big publications into one channel with a long history: the shard's L1 stays
    within ``cache.memory_budget`` (write-behind: once flushed), the channel keeps only
    its newest publications, and the history read through the node is complete — the
    engine answers what L1 shed, L1 what it still holds."""
    channel = "hot:ticker"
    async with run_node(_hot_config(policy)) as node:
        cache = node.node.cache
        shard = cache.caches[node.node.shard_of(channel)]
        for i in range(40):
            _, reply = await node.api("publish", {"channel": channel, "data": _hot_data(i)})
            assert reply["result"]["offset"] == i + 1
            if policy == "write_through":
                assert shard.statistics().bytes <= TINY
        _, reply = await node.api("publish", {"channel": channel,  # bigger than it all
                                              "data": _hot_data(40, 2 * TINY)})
        assert reply["result"]["offset"] == 41
        await wait_until(lambda: cache.statistics().pending == 0, "write-behind flushed")
        assert (await _stats(node))["bytes"] <= TINY * 2 and shard.statistics().bytes <= TINY
        entry = shard.entries[channel]
        assert entry.trimmed and not entry.pubs  # the last one did not fit at all
        assert (entry.top, entry.epoch) == (41, (await _history(node, channel))["epoch"])
        for i in range(41, 44):  # small again: L1 holds the newest ones
            await node.api("publish", {"channel": channel, "data": _hot_data(i, 10)})
        await wait_until(lambda: cache.statistics().pending == 0, "write-behind flushed")
        assert [p.offset for p in shard.entries[channel].pubs] == [42, 43, 44]

        before = await _stats(node)
        await _assert_hot_history(node, channel, 44)
        after = await _stats(node)
        assert after["misses"] > before["misses"]  # the full window: from the engine
        assert after["hits"] > before["hits"]  # the newest two: from L1
        assert after["bytes"] <= TINY * 2 and shard.statistics().bytes <= TINY
