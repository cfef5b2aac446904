"""``engine.redis`` keys against real redis-servers: ``db`` and ``prefix`` place the
keys, ``user``/``password`` authenticate (ACL), and a wrong password stops the start;
``connect_timeout``, ``io_timeout`` and ``sentinel_password`` reach every Redis client
the engine builds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis as sync_redis

from broker.config import config_from_mapping
from broker.engine.redis_link import Cluster, Sentinel, Standalone, topology_from_config
from tests.functional.conftest import base_config, run_node
from tests.redis_server import RedisServer, RedisUnavailable, redis_server

pytestmark = pytest.mark.redis


def redis_config(**redis: Any) -> dict[str, Any]:
    return base_config(engine={"type": "redis", "redis": redis},
                       channel={"without_namespace": {"history_size": 10,
                                                      "history_ttl": "60s"}})


async def published_and_read(node: Any) -> None:
    status, body = await node.api("publish", {"channel": "c", "data": 1})
    assert status == 200 and body["result"]["offset"] == 1, body
    status, body = await node.api("history", {"channel": "c", "limit": 10})
    assert [p["data"] for p in body["result"]["publications"]] == [1]


async def test_db_and_prefix_place_the_keys(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    address = [f"127.0.0.1:{port}"]  # host:port: a redis:// URL's own db would win
    async with run_node(redis_config(address=address, db=3, prefix="placed")) as node:
        await published_and_read(node)
    in_db3 = sync_redis.Redis(port=port, db=3).keys("placed*")
    assert in_db3, "no key with the prefix in db 3"
    assert not sync_redis.Redis(port=port, db=0).keys("placed*")


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    """A redis-server where only the ACL user ``chorus`` (password ``s3cret``) may log in."""
    acl = ("--user", "chorus", "on", ">s3cret", "~*", "&*", "+@all",
           "--user", "default", "on", "nopass", "-@all", "+ping")  # PING: readiness only
    try:
        with redis_server(extra=acl) as server:
            yield server
    except RedisUnavailable as exc:
        pytest.skip(str(exc))


async def test_user_and_password_authenticate(acl_server: RedisServer) -> None:
    address = [f"127.0.0.1:{acl_server.port}"]
    async with run_node(redis_config(address=address, user="chorus",
                                     password="s3cret")) as node:
        await published_and_read(node)
    with pytest.raises(Exception, match="redis engine could not start"):
        async with run_node(redis_config(address=address, user="chorus", password="wrong")):
            pass


def test_timeouts_and_sentinel_password_reach_every_redis_client() -> None:
    """Wiring (no server needed): the values land in redis-py's connection settings."""
    timeouts = {"connect_timeout": "250ms", "io_timeout": "3s"}

    def topology(**redis: Any) -> Any:
        return topology_from_config(config_from_mapping(redis_config(**timeouts, **redis)))

    standalone = topology(address=["127.0.0.1:1"])
    assert isinstance(standalone, Standalone)
    kwargs = standalone.client("c").connection_pool.connection_kwargs
    assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (0.25, 3.0)
    sentinel = topology(sentinel_address=["127.0.0.1:1"], sentinel_master_name="m",
                        sentinel_password="snt-secret")
    assert isinstance(sentinel, Sentinel)
    watcher = sentinel._sentinel.sentinels[0].connection_pool.connection_kwargs
    assert watcher["password"] == "snt-secret"
    assert (watcher["socket_connect_timeout"], watcher["socket_timeout"]) == (0.25, 3.0)
    cluster = topology(cluster_address=["127.0.0.1:1"])
    assert isinstance(cluster, Cluster)
    seed = cluster._client.startup_nodes  # RedisCluster keeps the kwargs for every node
    assert seed and cluster._client.connection_kwargs["socket_connect_timeout"] == 0.25
