"""``broker.backup`` on every Redis topology: standalone, client-side sharding, Sentinel
and Cluster. Channels are spread over every server (or slot), written through the
Redis engine, backed up, wiped (only this test's prefix: the servers are shared by the
session), restored, and read back through the engine's history: the restored stream
answers a position of the old epoch (the prior) in the new one; a position past the
restored top is unrecoverable; existing data is never overwritten."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.backup import backup, read_lines, restore
from broker.config import Config, config_from_mapping
from broker.engine.base import UnrecoverablePosition
from broker.engine.notify_redis import RedisNotificationStore
from broker.engine.redis import RedisEngine
from broker.engine.redis_link import Cluster
from broker.types import StreamPosition
from tests.redis_server import ClusterSetup, SentinelSetup

CHANNELS = [f"room-{i}" for i in range(8)]  # enough names to land on every shard/slot


def config_for(redis: dict[str, Any]) -> Config:
    return config_from_mapping({"client": {"insecure": True}, "engine": {
        "type": "redis", "redis": redis}})


async def wipe(engine: RedisEngine, prefix: str) -> None:
    """Delete every key under ``prefix`` on every server of the engine's topology."""
    from broker.backup import _scan_clients

    for client in _scan_clients(engine.topology):
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.delete(key)


@pytest.fixture
async def filled(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Config, RedisEngine]]:
    """A config for the requested topology and its engine with 3 publications on each
    channel and two notifications for "ann" (one read)."""
    prefix = f"bk-{request.param}"
    if request.param == "standalone":
        redis: dict[str, Any] = {"address": [request.getfixturevalue("redis_url")]}
    elif request.param == "sharded":
        redis = {"address": list(request.getfixturevalue("redis_shard_urls"))}
    elif request.param == "sentinel":
        setup: SentinelSetup = request.getfixturevalue("redis_sentinel")
        redis = {"sentinel_address": list(setup.sentinel_addresses),
                 "sentinel_master_name": setup.service}
    else:
        cluster: ClusterSetup = request.getfixturevalue("redis_cluster")
        redis = {"cluster_address": list(cluster.addresses)}
    config = config_for({**redis, "prefix": prefix})
    engine = RedisEngine.from_config(config)
    await engine.start()
    try:
        await wipe(engine, prefix)
        for channel in CHANNELS:
            for n in range(1, 4):
                await engine.publish(channel, b"%d" % n, history_size=10, history_ttl=600)
        store = RedisNotificationStore(engine.topology.client, prefix=prefix)
        first = await store.add("ann", b'{"n":1}', type="t")
        await store.add("ann", b'{"n":2}')
        await store.mark_read("ann", [first.id])
        yield config, engine
        await wipe(engine, prefix)
    finally:
        await engine.close()


TOPOLOGIES = [
    pytest.param("standalone", marks=pytest.mark.redis),
    pytest.param("sharded", marks=pytest.mark.redis),
    pytest.param("sentinel", marks=(pytest.mark.redis, pytest.mark.slow)),
    pytest.param("cluster", marks=(pytest.mark.redis, pytest.mark.slow)),
]


async def epochs(engine: RedisEngine) -> dict[str, str]:
    return {c: (await engine.history(c, limit=0))[1].epoch for c in CHANNELS}


@pytest.mark.parametrize("filled", TOPOLOGIES, indirect=True)
async def test_backup_wipe_restore_on_every_topology(filled: tuple[Config, RedisEngine]) -> None:
    config, engine = filled
    before = await epochs(engine)
    out = io.StringIO()
    written = await backup(config, out)
    assert (written.channels, written.publications) == (len(CHANNELS), 3 * len(CHANNELS))
    assert (written.inboxes, written.notifications) == (1, 2)
    await wipe(engine, config.engine.redis.prefix)
    if isinstance(engine.topology, Cluster):
        await engine.topology.refresh()
    done = await restore(config, read_lines(io.StringIO(out.getvalue())))
    assert (done.channels, done.publications, done.inboxes) == (len(CHANNELS),
                                                                3 * len(CHANNELS), 1)
    for channel in CHANNELS:
        old = before[channel]
        pubs, top = await engine.history(channel, since=StreamPosition(1, old), limit=-1)
        assert [(p.offset, p.data) for p in pubs] == [(2, b"2"), (3, b"3")]
        assert top.offset == 3 and top.epoch not in ("", old)
        with pytest.raises(UnrecoverablePosition):  # past the restored top: lost
            await engine.history(channel, since=StreamPosition(4, old), limit=-1)
        _, position = await engine.publish(channel, b"4", history_size=10, history_ttl=600)
        assert position == StreamPosition(4, top.epoch)  # offsets go on
    store = RedisNotificationStore(engine.topology.client, prefix=config.engine.redis.prefix)
    assert [(n.payload, n.read, n.type) for n in await store.list("ann")] == [
        (b'{"n":1}', True, "t"), (b'{"n":2}', False, "")]


@pytest.mark.parametrize("filled", TOPOLOGIES[:1], indirect=True)
async def test_restore_never_overwrites_and_drops_what_expired(
        filled: tuple[Config, RedisEngine]) -> None:
    config, engine = filled
    out = io.StringIO()
    await backup(config, out)
    records = read_lines(io.StringIO(out.getvalue()))
    # Over live data every channel and the inbox are skipped, nothing changes.
    live = await epochs(engine)
    again = await restore(config, records)
    assert again.channels == 0 and again.inboxes == 0
    assert again.skipped == {"channels that already hold publications": len(CHANNELS),
                             "inboxes that already exist": 1}
    assert await epochs(engine) == live
    # A stream whose history_ttl passed since the backup comes back as a position only.
    await wipe(engine, config.engine.redis.prefix)
    expired = next(r for r in records if r.get("channel") == CHANNELS[0])
    expired["stream_expire_at"] = 1
    done = await restore(config, records)
    assert done.publications == 3 * (len(CHANNELS) - 1)
    old = live[CHANNELS[0]]
    with pytest.raises(UnrecoverablePosition):  # its publications are gone
        await engine.history(CHANNELS[0], since=StreamPosition(1, old), limit=-1)
    pubs, top = await engine.history(CHANNELS[0], since=StreamPosition(3, old), limit=-1)
    assert pubs == [] and top.offset == 3  # a client at the top missed nothing
