"""Faults under continuous publishing, with recoverable SDK subscribers on every node.

Each test publishes round-robin through every node's ``/api/publish`` the whole time,
breaks something, lets it heal, then audits every subscription (tests.cluster.ledger):
every acknowledged publication is held (by offset, with its payload) or was covered by
an explicit "recovery failed" (a resubscribe answered ``recovered: false``); nothing is
missing silently, nothing arrives out of order. The counts go to the test's output
(``-s`` or the failure message): acknowledged, failed, held, signalled.

- Redis killed (SIGKILL) and restarted empty: the streams are gone, a new epoch begins;
  every subscriber must be told.
- Sentinel failover (``SENTINEL FAILOVER``): the replica takes over; no publication is
  lost (the test holds writes and waits for the replica before the failover, as an
  operator would; the primaries run with ``min-replicas-to-write 1``, as deployed).
- One node's pub/sub connection cut repeatedly for a while (``CLIENT KILL ID``), then
  left alone: that node catches up from the streams, so its subscribers end with
  everything and nobody is told anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.cluster.harness import (
    Outcome,
    Publisher,
    node_processes,
    pubsub_connections_of,
    settle,
    subscribers,
)
from tests.redis_server import RedisServer, RedisUnavailable, respawn, sentinel_setup
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.redis]

INTERVAL = 0.01  # between publications (each also waits for its HTTP answer)
# Sentinel demotes the old primary ~10 s after a failover (4 hello periods of 2 s, then its
# next 10-s INFO); until then the guarded primaries refuse writes (min-replicas-to-write).
# A deadline bounding that schedule, not a wait.
DEMOTION_DEADLINE = 40.0


async def until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    await wait_until(predicate, what, timeout, interval=0.02)


def report(name: str, result: Outcome) -> None:
    print(f"\n[{name}] {result.line()}")


@pytest.mark.parametrize("cache", [
    pytest.param({"memory_budget": 0}, id="no-l1"),
    pytest.param({}, id="default-l1"),  # positions come from the engine, not a stale L1
])
async def test_redis_killed_and_restarted_empty_every_subscriber_is_told(
        tmp_path: Path, redis: RedisServer, channels: list[str], cache: dict[str, int]) -> None:
    async with node_processes(tmp_path, {"address": [redis.url]}, 2,
                              extra={"cache": cache}) as nodes, \
            subscribers(nodes, channels, per_node=2) as subs:
        publisher = Publisher(nodes, channels)
        async with publisher.continuously(INTERVAL):
            await until(lambda: publisher.acked.count() >= 60, "publications before the kill")
            redis.process.kill()
            redis.process.wait()
            await until(lambda: publisher.failed >= 3, "publications failing while Redis is down")
            acked_before = publisher.acked.count()
            with respawn(redis):
                await until(lambda: publisher.acked.count() >= acked_before + 60,
                            "publications after the restart")
                publisher.stop()
                result = await settle(publisher, subs)
    report("redis restart", result)
    assert result.problems == [], result.details()
    assert result.pending == 0, result.line()
    epochs = {p.epoch for positions in publisher.acked.by_channel.values() for p in positions}
    assert len(epochs) >= 2, "the restart without persistence must start a new epoch"
    for sub in subs:  # every subscription learnt explicitly that recovery failed
        for log in sub.logs:
            assert log.signals >= 1, (sub.node, log.channel, result.line())
    assert result.held + result.signalled == result.acknowledged * len(subs)


async def test_sentinel_failover_loses_no_acknowledged_publication(
        tmp_path: Path, channels: list[str]) -> None:
    try:
        setup_cm = sentinel_setup()
        setup = setup_cm.__enter__()
    except RedisUnavailable as error:
        pytest.skip(f"redis-server not available: {error}")
    sentinel = aioredis.Redis(port=setup.sentinels[0].port)
    old = aioredis.Redis(port=setup.primary.port)
    try:
        engine = {"sentinel_address": list(setup.sentinel_addresses),
                  "sentinel_master_name": setup.service}
        async with node_processes(tmp_path, engine, 2) as nodes, \
                subscribers(nodes, channels, per_node=2) as subs:
            publisher = Publisher(nodes, channels)
            async with publisher.continuously(INTERVAL):
                await until(lambda: publisher.acked.count() >= 60, "publications before")
                # An operator's clean switch: hold writes, let the replica take everything,
                # promote it. Replication is asynchronous: promoted with a publication in
                # flight, the replica would drop one the old primary acknowledged.
                await old.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
                await _replica_caught_up(old)
                await sentinel.execute_command("SENTINEL", "FAILOVER", setup.service)
                await _primary_is(sentinel, setup.service, setup.replica.port)
                # The writes held meanwhile now meet min-replicas-to-write: refused, not lost.
                await old.execute_command("CLIENT", "UNPAUSE")
                switched_at = publisher.acked.count()
                await until(lambda: publisher.acked.count() >= switched_at + 60,
                            "publications after the failover", DEMOTION_DEADLINE)
            result = await settle(publisher, subs)
    finally:
        await sentinel.aclose()
        await old.aclose()
        setup_cm.__exit__(None, None, None)
    report("sentinel failover", result)
    assert result.problems == [], result.details()
    assert result.pending == 0, result.line()
    assert result.held + result.signalled == result.acknowledged * len(subs)


async def test_one_nodes_pubsub_cut_and_restored_its_subscribers_catch_up(
        tmp_path: Path, redis: RedisServer, channels: list[str]) -> None:
    admin = aioredis.Redis(port=redis.port)
    async with node_processes(tmp_path, {"address": [redis.url]}, 3) as nodes, \
            subscribers(nodes, channels, per_node=1) as subs:
        publisher = Publisher(nodes, channels)
        cut = nodes[0]
        kills = 0
        async with publisher.continuously(INTERVAL):
            await until(lambda: publisher.acked.count() >= 30, "publications before the cut")
            loop = asyncio.get_running_loop()
            end = loop.time() + 1.5
            while loop.time() < end:  # every reconnect is cut again: a 1.5 s outage
                for client_id in await pubsub_connections_of(admin, redis.port, cut.process.pid):
                    await admin.execute_command("CLIENT", "KILL", "ID", client_id)
                    kills += 1
                await asyncio.sleep(0.01)  # polling for the node's next reconnect
            restored_at = publisher.acked.count()
            await until(lambda: publisher.acked.count() >= restored_at + 30,
                        "publications after the cut")
        result = await settle(publisher, subs)
    await admin.aclose()
    report(f"pub/sub cut ({kills} connections killed)", result)
    assert kills >= 1, "the node's pub/sub connection was never found"
    assert result.problems == [], result.details()
    # the streams still hold everything: caught up, nobody told anything
    assert result.signals == 0 and result.unsubscribe_pushes == 0, result.line()
    assert result.held == result.acknowledged * len(subs), result.line()


async def _replica_caught_up(primary: aioredis.Redis) -> None:
    """Until the replica acknowledged the primary's whole replication stream (the caller
    holds writes, so the stream stops growing)."""

    async def caught_up() -> bool:
        info = await primary.info("replication")
        replica: Any = info.get("slave0")
        return bool(replica) and int(replica["offset"]) >= int(info["master_repl_offset"])

    await wait_until(caught_up, "the replica caught up with the primary", 20)


async def _primary_is(sentinel: aioredis.Redis, service: str, port: int) -> None:
    async def switched() -> bool:
        _, current = await sentinel.sentinel_get_master_addr_by_name(service)  # type: ignore[misc]
        return int(current) == port

    await wait_until(switched, "the sentinels switched to the replica", 30)
