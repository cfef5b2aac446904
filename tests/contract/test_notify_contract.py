"""The NotificationStore contract, on memory and on real Redis (standalone, Sentinel with
replica reads, Cluster)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from broker.engine.base import EngineError
from broker.engine.notify_memory import MemoryNotificationStore
from broker.notify import NotificationStore, parse_id
from tests.contract.helpers import eventually

StoreFactory = Callable[..., Awaitable[NotificationStore]]


@pytest.fixture(params=[
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis-sentinel-replica", marks=(pytest.mark.redis, pytest.mark.slow)),
    pytest.param("redis-cluster", marks=(pytest.mark.redis, pytest.mark.slow)),
])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    made: list[Any] = []
    prefix = f"chorus-test-{uuid.uuid4().hex[:10]}"

    async def make(**options: Any) -> NotificationStore:
        store: Any
        if request.param == "memory":
            store = MemoryNotificationStore(**options)
        else:
            store = await _redis_store(request, prefix, options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()
        engine = getattr(store, "_engine", None)
        if engine is not None:
            await engine.close()


async def _redis_store(request: pytest.FixtureRequest, prefix: str,
                       options: dict[str, Any]) -> Any:
    from broker.engine.notify_redis import RedisNotificationStore
    from broker.engine.redis import RedisEngine
    from broker.engine.redis_link import Cluster, Sentinel, parse_address

    read_client = None
    if request.param == "redis":
        engine = RedisEngine(request.getfixturevalue("redis_url"), prefix=prefix)
    elif request.param == "redis-cluster":
        setup = request.getfixturevalue("redis_cluster")
        engine = RedisEngine(prefix=prefix, topology=Cluster(
            [parse_address(a) for a in setup.addresses]))
    else:
        setup = request.getfixturevalue("redis_sentinel")
        addresses = [parse_address(a) for a in setup.sentinel_addresses]
        engine = RedisEngine(prefix=prefix, topology=Sentinel(addresses, setup.service))
        from redis.asyncio.sentinel import Sentinel as SentinelClient

        read_client = SentinelClient([(a.host, a.port) for a in addresses]).slave_for(
            setup.service)
    await engine.start()
    store = RedisNotificationStore(engine.topology.client, prefix=prefix,
                                   read_client=read_client, **options)
    store._engine = engine  # type: ignore[attr-defined]  # closed by the fixture
    return store


async def _listed(store: NotificationStore, user: str, **kw: Any) -> list[str]:
    return [n.id for n in await store.list(user, **kw)]


async def test_add_then_list_oldest_first_with_increasing_ids(make_store: StoreFactory) -> None:
    store = await make_store()
    added = [await store.add("alice", b'{"n":%d}' % i, type="msg") for i in range(3)]
    await store.add("bob", b"1")
    assert [parse_id(n.id) for n in added] == sorted(parse_id(n.id) for n in added)

    async def all_three() -> bool:  # a replica may lag
        return await _listed(store, "alice") == [n.id for n in added]

    await eventually(all_three)
    listed = await store.list("alice")
    assert [(n.type, n.payload, n.read) for n in listed] == [
        ("msg", b'{"n":%d}' % i, False) for i in range(3)]
    assert listed[0].time > 0 and listed[0].expire_at == 0
    assert await _listed(store, "alice", limit=2) == [n.id for n in added[1:]]
    assert len(await store.list("bob")) == 1 and await store.list("carol") == []


async def test_mark_read_is_idempotent_and_filters_unread(make_store: StoreFactory) -> None:
    store = await make_store()
    first, second = await store.add("alice", b"1"), await store.add("alice", b"2")
    assert await store.mark_read("alice", [first.id, "999-0"]) == 1
    assert await store.mark_read("alice", [first.id]) == 0

    async def only_second_unread() -> bool:
        return await _listed(store, "alice", unread_only=True) == [second.id]

    await eventually(only_second_unread)
    assert [n.read for n in await store.list("alice")] == [True, False]


async def test_retention_by_count_keeps_the_newest(make_store: StoreFactory) -> None:
    store = await make_store(retention_count=3)
    added = [await store.add("alice", b"%d" % i) for i in range(5)]

    async def newest_three() -> bool:
        return await _listed(store, "alice") == [n.id for n in added[2:]]

    await eventually(newest_three)


async def test_ttl_and_retention_age_expire(make_store: StoreFactory) -> None:
    store = await make_store(retention_age=1.0)
    short = await store.add("alice", b"1", ttl=0.2)
    assert short.expire_at == short.time + 200
    await store.add("alice", b"2")

    async def short_gone() -> bool:
        return len(await store.list("alice")) == 1

    await eventually(short_gone)

    async def all_gone() -> bool:
        return await store.list("alice") == []

    await eventually(all_gone)


async def test_closed_store_raises_engine_error(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.close()
    with pytest.raises(EngineError):
        await store.add("alice", b"1")


async def test_malformed_id_is_rejected(make_store: StoreFactory) -> None:
    store = await make_store()
    with pytest.raises(ValueError):
        await store.mark_read("alice", ["nonsense"])
