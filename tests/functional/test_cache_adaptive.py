"""The adaptive cache policy on a real node: a write-heavy channel moves to write-behind
and back (after its buffer drained, so offsets stay contiguous), its L1 share shrinks
while nobody reads it, and every change shows in cache_stats and the console's node info."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from broker.admin.views import nodes
from tests.contract.helpers import eventually
from tests.functional.conftest import RunningNode, base_config, run_node

WINDOW = 0.2


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    config = base_config(
        channel={"namespaces": [{"name": "ad", "history_size": 50, "history_ttl": "60s"}]},
        cache={"adaptive": True, "adaptive_window": f"{int(WINDOW * 1000)}ms",
               "adaptive_write_behind_rate": 20, "adaptive_read_ratio": 0.1,
               "adaptive_cold_read_rate": 1, "adaptive_min_l1": 2})
    async with run_node(config) as running:
        yield running


async def _engine_offsets(node: RunningNode, channel: str) -> list[int]:
    pubs, _ = await node.node.engine.history(channel, limit=-1, history_ttl=60)
    return [p.offset for p in pubs]


async def test_write_heavy_channel_switches_to_write_behind_and_back(node: RunningNode) -> None:
    channel, core = "ad:ticks", node.node
    cache = core.cache
    for i in range(30):  # a burst: well over 20 publishes/s, no reads
        await core.publish(channel, b"%d" % i)
    await asyncio.sleep(WINDOW)  # the rates are per window of time
    await core.publish(channel, b"30")  # closes the window: the decision is made
    assert cache.policy(core.options(channel), channel) == "write_behind"
    _, position = await core.publish(channel, b"31")  # acknowledged from L1
    assert position.offset == 32 and await _engine_offsets(node, channel) == list(range(1, 32))
    await asyncio.sleep(WINDOW)
    await core.publish(channel, b"32")  # one publish in a window: no longer write-heavy
    assert cache.adaptive is not None and channel not in cache.adaptive.policies
    await eventually(lambda: cache.statistics().pending == 0)
    assert cache.policy(core.options(channel), channel) == "write_through"  # drained
    _, position = await core.publish(channel, b"33")
    assert position.offset == 34
    assert await _engine_offsets(node, channel) == list(range(1, 35))  # no gap, no reuse
    _, reply = await node.api("cache_stats", {})
    changes = [(c["kind"], c["new"]) for c in reply["result"]["adaptive"]["changes"]]
    assert changes[:3] == [("policy", "write_behind"), ("l1_size", 2),
                           ("policy", "write_through")]
    console = nodes(core)["nodes"][0]["cache"]["adaptive"]
    assert console["enabled"] and len(console["changes"]) == len(changes)


async def test_cold_channel_keeps_a_small_l1_and_reads_stay_correct(
        node: RunningNode) -> None:
    channel, core = "ad:cold", node.node
    for i in range(10):
        await core.publish(channel, b"%d" % i)
    await asyncio.sleep(WINDOW)
    await core.publish(channel, b"10")  # no reads in the window: L1 keeps 2
    index = core.shard_of(channel)
    entry = core.cache.caches[index].entries[channel]
    assert len(entry.pubs) == 2 and entry.trimmed
    _, reply = await node.api("history", {"channel": channel, "limit": -1})
    assert [p["offset"] for p in reply["result"]["publications"]] == list(range(1, 12))
    _, reply = await node.api("history", {"channel": channel, "limit": 2, "reverse": True})
    assert [p["offset"] for p in reply["result"]["publications"]] == [11, 10]


@pytest.mark.redis
@pytest.mark.parametrize("declared", [False, True])
async def test_with_redis_write_behind_needs_the_single_writer_declaration(
        redis_url: str, declared: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Other nodes may write the same streams through Redis: the adaptive policy never
    moves a write-heavy channel to write-behind (and says so once at start) unless
    ``cache.single_writer`` declares this node the only writer."""
    config = base_config(
        engine={"type": "redis",
                "redis": {"address": [redis_url], "prefix": f"adsw{int(declared)}"}},
        channel={"namespaces": [{"name": "ad", "history_size": 50, "history_ttl": "60s"}]},
        cache={"adaptive": True, "adaptive_window": f"{int(WINDOW * 1000)}ms",
               "adaptive_write_behind_rate": 20, "single_writer": declared})
    with caplog.at_level(logging.INFO, "chorus.cache"):
        async with run_node(config) as node:
            channel, core = "ad:ticks", node.node
            for i in range(30):  # write-heavy, as in the memory-engine test above
                await core.publish(channel, b"%d" % i)
            await asyncio.sleep(WINDOW)
            await core.publish(channel, b"30")  # closes the window: the decision
            chosen = core.cache.policy(core.options(channel), channel)
            assert chosen == ("write_behind" if declared else "write_through")
            await eventually(lambda: core.cache.statistics().pending == 0)
            assert await _engine_offsets(node, channel) == list(range(1, 32))
    withheld = [r for r in caplog.records if "write_behind is never chosen" in r.message]
    assert len(withheld) == (0 if declared else 1)
    assert declared or "cache.single_writer" in withheld[0].message


async def test_read_heavy_channel_stays_write_through(node: RunningNode) -> None:
    """``adaptive_read_ratio`` 0.1: a burst read once per two publishes is not
    write-heavy, however fast it publishes."""
    channel, core = "ad:read", node.node
    for i in range(30):
        await core.publish(channel, b"%d" % i)
        if i % 2:
            await node.api("history", {"channel": channel, "limit": 1})
    await asyncio.sleep(WINDOW)  # the rates are per window of time
    await core.publish(channel, b"30")  # closes the window: the decision is made
    assert core.cache.policy(core.options(channel), channel) == "write_through"
