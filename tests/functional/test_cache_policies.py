"""The L1 cache policies on a real node: write-through, write-behind (its durability
window, and a shard crash losing exactly that window), read-through, off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.contract.helpers import eventually
from tests.functional.conftest import RunningNode, base_config, run_node

FLUSH = 0.3  # write-behind cache_flush_delay of the "wb" namespace


def _ns(name: str, policy: str) -> dict[str, Any]:
    return {"name": name, "history_size": 10, "history_ttl": "60s",
            "cache_policy": policy, "cache_flush_delay": f"{int(FLUSH * 1000)}ms"}


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    namespaces = [_ns(n, p) for n, p in (("wt", "write_through"), ("wb", "write_behind"),
                                          ("rt", "read_through"), ("off", "off"))]
    config = base_config(channel={"namespaces": namespaces},
                         admin={"allow_crash_actor": True, "insecure": True})
    async with run_node(config) as running:
        yield running


async def _engine_offsets(node: RunningNode, channel: str) -> list[int]:
    pubs, _ = await node.node.engine.history(channel, limit=-1, history_ttl=60)
    return [p.offset for p in pubs]


async def _api_history(node: RunningNode, channel: str) -> list[int]:
    _, reply = await node.api("history", {"channel": channel, "limit": -1})
    return [p["offset"] for p in reply["result"]["publications"]]


@pytest.mark.parametrize("policy", ["wt", "rt", "off"])
async def test_engine_first_policies_store_before_ack_and_serve_history(
        node: RunningNode, policy: str) -> None:
    channel = f"{policy}:room"
    for i in range(3):
        _, reply = await node.api("publish", {"channel": channel, "data": {"i": i}})
        assert reply["result"]["offset"] == i + 1
        assert await _engine_offsets(node, channel) == list(range(1, i + 2))  # acked = stored
    before = node.node.cache.statistics().cache
    assert await _api_history(node, channel) == [1, 2, 3]
    assert await _api_history(node, channel) == [1, 2, 3]
    after = node.node.cache.statistics().cache
    # write-through filled L1 on publish; read-through loads on the first miss (then
    # answers from L1); off: no L1 at all
    assert (after.hits - before.hits, after.misses - before.misses) == {
        "wt": (2, 0), "rt": (2, 1), "off": (0, 0)}[policy]


async def test_write_behind_acks_from_l1_and_flushes_within_the_window(
        node: RunningNode) -> None:
    channel = "wb:room"
    started = time.monotonic()
    for i in range(5):
        _, reply = await node.api("publish", {"channel": channel, "data": i})
        assert reply["result"]["offset"] == i + 1
    assert await _api_history(node, channel) == [1, 2, 3, 4, 5]  # served by L1
    assert await _engine_offsets(node, channel) == []  # not flushed yet
    cache = node.node.cache

    async def flushed() -> bool:
        return await _engine_offsets(node, channel) == [1, 2, 3, 4, 5]

    await eventually(flushed)
    assert time.monotonic() - started >= FLUSH * 0.9
    stats = cache.statistics()
    assert stats.flushed == 5 and stats.pending == 0
    assert stats.max_flush_lag <= FLUSH + 0.2  # the documented window (+ write time)


async def test_shard_crash_during_write_behind_loses_exactly_the_unflushed_window(
        node: RunningNode) -> None:
    channel = "wb:crash"
    for i in range(3):
        await node.api("publish", {"channel": channel, "data": i})
    cache = node.node.cache
    await eventually(lambda: cache.statistics().flushed == 3)
    acked = []
    for i in range(2):  # acknowledged, still inside the write-behind window
        await node.api("publish", {"channel": channel, "data": 10 + i})
        acked.append(time.monotonic())
    assert cache.statistics().pending == 2
    index = node.node.shard_of(channel)
    node.node.runtime.crash_actor(node.node.shard_ids[index])
    crashed = time.monotonic()
    await eventually(lambda: cache.statistics().lost == 2)
    assert all(crashed - t < FLUSH for t in acked)  # the lost ones are younger than the window
    await asyncio.sleep(FLUSH * 1.5)  # past the window: nothing more arrives
    assert await _engine_offsets(node, channel) == [1, 2, 3]
    assert await _api_history(node, channel) == [1, 2, 3]  # the restarted L1 reloads
    _, reply = await node.api("publish", {"channel": channel, "data": "after"})
    assert reply["result"]["offset"] == 4


async def test_cache_stats_api_and_flush_all_on_shutdown(node: RunningNode) -> None:
    await node.api("publish", {"channel": "wb:x", "data": 1})
    _, reply = await node.api("cache_stats", {})
    assert reply["result"]["pending"] == 1 and reply["result"]["entries"] == 1
    await node.node.cache.flush_all()  # what the app's cleanup runs before engine.close
    assert await _engine_offsets(node, "wb:x") == [1]
    _, reply = await node.api("cache_stats", {})
    assert (reply["result"]["pending"], reply["result"]["flushed"]) == (0, 1)
