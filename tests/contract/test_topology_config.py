"""Redis topologies chosen by config, with a whole node on them: ``engine.redis.
cluster_address`` (Redis Cluster), ``sentinel_address`` + ``sentinel_master_name``
(Sentinel), and ``notifications.read_from_replica`` (notification reads on the replica).
Uses the session's Cluster and Sentinel setups of this folder's conftest."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.contract.helpers import eventually
from tests.functional.conftest import RunningNode, base_config, next_event, run_node, sdk_client
from tests.redis_server import ClusterSetup, SentinelSetup

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def node_config(redis: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return base_config(engine={"type": "redis", "redis": redis},
                       channel={"without_namespace": {"allow_subscribe_for_client": True,
                                                      "history_size": 10,
                                                      "history_ttl": "60s"}}, **extra)


async def publish_subscribe_history(node: RunningNode, channel: str) -> None:
    async with sdk_client(node) as sdk:
        _, events = await sdk.subscribe(channel)
        status, body = await node.api("publish", {"channel": channel, "data": "x"})
        assert status == 200 and body["result"]["offset"] == 1, body
        assert sdk.value((await next_event(events.publications)).data) == "x"
    _, body = await node.api("history", {"channel": channel, "limit": 10})
    assert [p["data"] for p in body["result"]["publications"]] == ["x"]


async def test_cluster_address_runs_the_node_on_redis_cluster(
        redis_cluster: ClusterSetup) -> None:
    config = node_config({"cluster_address": list(redis_cluster.addresses),
                          "prefix": "cfg-cluster"})
    async with run_node(config) as node:
        assert node.node.engine.statistics().topology == "cluster"
        await publish_subscribe_history(node, "on-cluster")


async def test_sentinel_keys_and_read_from_replica(redis_sentinel: SentinelSetup) -> None:
    redis = {"sentinel_address": list(redis_sentinel.sentinel_addresses),
             "sentinel_master_name": redis_sentinel.service, "prefix": "cfg-sentinel"}
    config = node_config(redis, notifications={"read_from_replica": True})
    sentinel = aioredis.Redis(port=redis_sentinel.sentinels[0].port)
    try:
        replica = await settled_replica(sentinel, redis_sentinel.service)
        async with run_node(config) as node:
            assert node.node.engine.statistics().topology == "sentinel"
            await publish_subscribe_history(node, "on-sentinel")
            xranges = await xrange_calls(replica)
            await node.api("notify", {"user": "rita", "payload": "hello"})

            async def listed() -> bool:  # the replica may lag the primary a little
                _, body = await node.api("notifications", {"user": "rita"})
                return [n["payload"] for n in body["result"]["notifications"]] == ["hello"]

            await eventually(listed)
            assert await xrange_calls(replica) > xranges, "the list did not read the replica"
        await replica.aclose()
    finally:
        await sentinel.aclose()


async def settled_replica(sentinel: aioredis.Redis, service: str) -> aioredis.Redis:
    """The service's one replica, once it replicates the current primary (a failover
    test of this session may have left the pair mid-switch)."""
    found: list[aioredis.Redis] = []

    async def replicating() -> bool:
        _, port = await sentinel.sentinel_get_master_addr_by_name(service)
        for entry in await sentinel.sentinel_slaves(service):
            if entry["flags"] != "slave" or entry["master-link-status"] != "ok":
                continue
            candidate = aioredis.Redis(host=entry["ip"], port=int(entry["port"]))
            info = await candidate.info("replication")
            if info["role"] == "slave" and info["master_link_status"] == "up" and \
                    int(info["master_port"]) == int(port):
                found.append(candidate)
                return True
            await candidate.aclose()
        return False

    await eventually(replicating, timeout=30)
    return found[0]


async def xrange_calls(server: aioredis.Redis) -> int:
    stats = await server.info("commandstats")
    return int(stats.get("cmdstat_xrange", {}).get("calls", 0))
