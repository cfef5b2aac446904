"""Refresh-ahead on a real node (memory engine, ``eviction: ttl`` with a short ttl): a
hot channel stays an L1 hit across several ttl periods without a read keeping it
alive, and picks up what another writer put in the engine; a cold channel expires and
misses; with ``refresh_ahead`` 0 the hot channel misses too."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.functional.conftest import RunningNode, base_config, run_node, wait_until

TTL = 0.4  # cache.ttl (seconds); refresh_ahead 0.4: a due entry has 0.12 s of slack
IDLE = TTL * 1.4  # an idle gap past the ttl: what expiry (or refresh-ahead) acts on
HOT, COLD = "rf:hot", "rf:cold"


def _config(refresh_ahead: float) -> dict[str, Any]:
    namespace = {"name": "rf", "history_size": 10, "history_ttl": "60s"}
    return base_config(channel={"namespaces": [namespace]},
                       cache={"eviction": "ttl", "ttl": f"{int(TTL * 1000)}ms",
                              "refresh_ahead": refresh_ahead})


async def _seed(node: RunningNode, channel: str, count: int) -> None:
    """Publications straight into the engine, as another node's would be: unseen by L1."""
    for i in range(count):
        await node.node.engine.publish(channel, b'{"i": %d}' % i, history_size=10,
                                       history_ttl=60.0)


async def _history(node: RunningNode, channel: str) -> list[int]:
    status, reply = await node.api("history", {"channel": channel, "limit": -1})
    assert status == 200, reply
    return [p["offset"] for p in reply["result"]["publications"]]


async def _stats(node: RunningNode) -> dict[str, Any]:
    _, reply = await node.api("cache_stats", {})
    stats: dict[str, Any] = reply["result"]
    return stats


async def _heat_up(node: RunningNode) -> None:
    for channel in (HOT, COLD):
        await _seed(node, channel, 3)
    assert await _history(node, COLD) == [1, 2, 3]  # one read: loaded, stays cold
    for _ in range(4):  # hot: heat 4 >= HOT_SCORE
        assert await _history(node, HOT) == [1, 2, 3]


async def test_hot_channel_stays_an_l1_hit_across_ttl_periods_cold_one_expires() -> None:
    async with run_node(_config(refresh_ahead=0.4)) as node:
        await _heat_up(node)
        stats = await _stats(node)
        assert stats["refresh"]["running"] and stats["refreshes"] == 0
        misses = stats["misses"]
        await asyncio.sleep(IDLE)  # the ttl passes with no read of either channel
        assert await _history(node, HOT) == [1, 2, 3]
        assert (await _stats(node))["misses"] == misses  # refreshed ahead: a hit
        assert await _history(node, COLD) == [1, 2, 3]  # from the engine again
        after_cold = (await _stats(node))["misses"]
        assert after_cold > misses  # cold: expired, missed
        for _ in range(3):  # several more ttl periods, each idle past the ttl
            await asyncio.sleep(IDLE)
            assert await _history(node, HOT) == [1, 2, 3]
        stats = await _stats(node)
        assert stats["misses"] == after_cold and stats["refreshes"] >= 4
        assert stats["refresh"]["failures"] == 0

        # refreshes reload from the engine: another writer's publication shows up in L1
        await _seed(node, HOT, 1)
        cache = node.node.cache.caches[node.node.shard_of(HOT)]
        await wait_until(lambda: (top := cache.top(HOT)) is not None and top.offset == 4,
                         "the refresh to load offset 4 into L1")
        assert await _history(node, HOT) == [1, 2, 3, 4]
        assert (await _stats(node))["misses"] == after_cold


async def test_without_refresh_ahead_the_hot_channel_expires_too() -> None:
    async with run_node(_config(refresh_ahead=0.0)) as node:
        await _heat_up(node)
        stats = await _stats(node)
        assert not stats["refresh"]["enabled"]
        await asyncio.sleep(IDLE)
        assert await _history(node, HOT) == [1, 2, 3]
        stats_after = await _stats(node)
        assert stats_after["misses"] > stats["misses"]
        assert stats_after["refreshes"] == 0


async def test_refresh_stops_with_the_node() -> None:
    async with run_node(_config(refresh_ahead=0.4)) as node:
        refresher = node.node.cache.refresher
        assert refresher.running
    assert not refresher.running  # the app's cleanup (flush_all) stopped the tick
