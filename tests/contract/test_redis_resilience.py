"""RedisEngine under failure: restart without persistence, killed pub/sub, Sentinel failover.

Each test runs real servers of its own (it breaks them) and awaits the observable effect
with a deadline; no fixed sleeps, and no bet on the test outrunning a reconnect backoff:
a cut link is held down (``cut_pubsub``) until the test has done what must fall into it.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from broker.engine.base import EngineError, UnrecoverablePosition
from broker.engine.redis import RedisEngine
from broker.engine.redis_link import Sentinel, parse_address
from broker.types import Publication, StreamPosition
from tests.contract.helpers import Recorder, eventually, start_linked
from tests.redis_server import (
    RedisServer,
    SentinelSetup,
    redis_server,
    respawn,
    sentinel_setup,
)

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary"),
]

EngineFactory = Callable[..., RedisEngine]


CUT = "cut"  # the Redis user of the engine whose pub/sub link a test cuts


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    """A private server with a user ``CUT`` (password ``CUT``) allowed everything."""
    with redis_server() as server:
        admin = redis.Redis(port=server.port)
        try:
            admin.execute_command("ACL", "SETUSER", CUT, "on", f">{CUT}", "~*", "&*", "+@all")
        finally:
            admin.close()
        yield server


def _url_of(server: RedisServer, user: str) -> str:
    return f"redis://{user}:{user}@127.0.0.1:{server.port}/0"


@asynccontextmanager
async def cut_pubsub(server: RedisServer, user: str) -> AsyncIterator[None]:
    """Kill ``user``'s pub/sub connections and keep them down for the block: the user is
    disabled, so every reconnect is refused until the block ends. What the test does in
    the block falls into the cut however slowly the machine runs it (a reconnect backoff
    would only bet on the test being faster than the backoff)."""
    admin = aioredis.Redis(port=server.port)
    try:
        await admin.execute_command("ACL", "SETUSER", user, "off")
        await admin.execute_command("CLIENT", "KILL", "USER", user, "TYPE", "pubsub")
        yield
    finally:
        await admin.execute_command("ACL", "SETUSER", user, "on")
        await admin.aclose()


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as engines:
        yield engines


async def started(
    stack: AsyncExitStack, engine: RedisEngine, recorder: Recorder | None = None
) -> tuple[RedisEngine, Recorder, list[str]]:
    """Start ``engine`` with recording handlers (unrecoverable channels in the list)."""
    recorder = recorder or Recorder()
    lost: list[str] = []
    engine.set_handlers(recorder.on_publication, recorder.on_control, recorder.on_join,
                        recorder.on_leave, on_unrecoverable=lost.append)
    stack.push_async_callback(await start_linked(engine))
    return engine, recorder, lost


async def publish(engine: RedisEngine, channel: str, n: int) -> list[StreamPosition]:
    return [(await engine.publish(channel, b"%d" % i, history_size=100, history_ttl=60))[1]
            for i in range(n)]


def offsets(items: list[tuple[str, Publication, StreamPosition | None]]) -> list[int]:
    return [pub.offset for _, pub, _ in items]


async def test_restart_without_persistence_gives_new_epoch(
    private_server: RedisServer, stack: AsyncExitStack
) -> None:
    fast: dict[str, Any] = {"backoff_base": 0.02, "backoff_cap": 0.2, "io_timeout": 2.0}
    a, _, _ = await started(stack, RedisEngine(private_server.url, prefix="t", **fast))
    b, b_got, b_lost = await started(stack, RedisEngine(private_server.url, prefix="t", **fast))
    await b.subscribe("ch")
    old = (await publish(a, "ch", 3))[-1]
    await eventually(lambda: len(b_got.publications) == 3)
    private_server.process.terminate()
    private_server.process.wait(timeout=10)
    await eventually(lambda: not b.link_up)
    with respawn(private_server):

        async def published() -> bool:
            try:
                await publish(a, "ch", 1)
            except EngineError:
                return False
            return True

        await eventually(published, timeout=10)
        pubs, top = await a.history("ch", limit=-1)
        assert top.epoch != old.epoch and [p.offset for p in pubs] == [1]
        with pytest.raises(UnrecoverablePosition):
            await a.history("ch", since=old, limit=-1)
        # The subscribed node learns that its position cannot be continued.
        await eventually(lambda: b_lost == ["ch"] and b.link_up, timeout=10)
        assert b.statistics().reconnects >= 1


async def test_killed_pubsub_connection_loses_nothing(
    private_server: RedisServer, stack: AsyncExitStack
) -> None:
    a, _, _ = await started(stack, RedisEngine(private_server.url, prefix="t"))
    b, b_got, b_lost = await started(stack, RedisEngine(_url_of(private_server, CUT), prefix="t",
                                                        backoff_base=0.05, backoff_cap=0.5))
    await b.subscribe("ch")
    await publish(a, "ch", 3)
    await eventually(lambda: len(b_got.publications) == 3)
    async with cut_pubsub(private_server, CUT):
        await eventually(lambda: not b.link_up)
        await publish(a, "ch", 7)  # during the cut
    await eventually(lambda: len(b_got.publications) == 10)
    assert offsets(b_got.publications) == list(range(1, 11))
    assert [pub.data for _, pub, _ in b_got.publications] == [b"0", b"1", b"2"] + [
        b"%d" % i for i in range(7)
    ]
    stats = b.statistics()
    assert stats.link_up and stats.reconnects >= 1 and stats.caught_up == 7
    assert b_lost == []
    await publish(a, "ch", 1)  # live delivery works again after the catch-up
    await eventually(lambda: offsets(b_got.publications)[-1] == 11)
    assert len(b_got.publications) == 11


async def test_gap_beyond_stream_is_reported_not_delivered(
    private_server: RedisServer, stack: AsyncExitStack
) -> None:
    a, _, _ = await started(stack, RedisEngine(private_server.url, prefix="t"))
    b, b_got, b_lost = await started(stack, RedisEngine(_url_of(private_server, CUT), prefix="t",
                                                        backoff_base=0.05, backoff_cap=0.5))
    await b.subscribe("ch")
    async with cut_pubsub(private_server, CUT):
        await eventually(lambda: not b.link_up)
        for i in range(5):  # a stream of 2 cannot hold the 5 published during the cut
            await a.publish("ch", b"%d" % i, history_size=2, history_ttl=60)
    await eventually(lambda: b_lost == ["ch"])
    assert b_got.publications == []
    await a.publish("ch", b"after", history_size=2, history_ttl=60)
    await eventually(lambda: offsets(b_got.publications) == [6])


async def test_own_publication_returns_after_the_lower_offsets_of_other_nodes(
    private_server: RedisServer, stack: AsyncExitStack
) -> None:
    """The node fans its own publication out the moment publish returns: what other nodes
    published before it must have reached the handlers by then, even while the pub/sub
    link is down, or local subscribers would get the offsets out of order."""
    a, a_got, a_lost = await started(stack, RedisEngine(_url_of(private_server, CUT), prefix="t",
                                                        backoff_base=0.05, backoff_cap=0.5))
    b, _, _ = await started(stack, RedisEngine(private_server.url, prefix="t"))
    await a.subscribe("ch")
    # a's command connections are made before the cut refuses new ones (only its pub/sub
    # link is cut): its publish lane's, and the pool's the catch-up reads on.
    await publish(a, "warm", 1)
    await a.history("warm", limit=0)
    async with cut_pubsub(private_server, CUT):
        await eventually(lambda: not a.link_up)
        await publish(b, "ch", 2)  # offsets 1 and 2 cannot reach a over pub/sub
        assert [p.offset for p in await publish(a, "ch", 1)] == [3]
        assert offsets(a_got.publications) == [1, 2]  # before a's own 3 is fanned out
    await eventually(lambda: a.link_up)
    await publish(b, "ch", 1)
    await eventually(lambda: offsets(a_got.publications) == [1, 2, 4])  # 3 is a's own
    assert a_lost == []


async def _cut_node(server: RedisServer, stack: AsyncExitStack,
                    ) -> tuple[RedisEngine, Recorder, list[str], RedisEngine]:
    """Node a (its pub/sub link cuttable) subscribed to ``ch``, node b; a's command
    connections made before a cut refuses new ones (see the test above)."""
    a, a_got, a_lost = await started(stack, RedisEngine(_url_of(server, CUT), prefix="t",
                                                        backoff_base=0.05, backoff_cap=0.5))
    b, _, _ = await started(stack, RedisEngine(server.url, prefix="t"))
    await a.subscribe("ch")
    await publish(a, "warm", 1)
    await a.history("warm", limit=0)
    return a, a_got, a_lost, b


async def test_history_answers_no_top_ahead_of_the_handlers(
    private_server: RedisServer, stack: AsyncExitStack
) -> None:
    """A subscribe reply takes the history's top as the subscriber's position, and the
    shard hands it only what comes later: what other nodes published up to that top
    must have reached the handlers when the read returns, even while the pub/sub link
    is down, or the subscriber would get those offsets again after its reply (the
    repeat tests/cluster/test_faults.py found after a Redis restart)."""
    a, a_got, a_lost, b = await _cut_node(private_server, stack)
    async with cut_pubsub(private_server, CUT):
        await eventually(lambda: not a.link_up)
        await publish(b, "ch", 2)  # offsets 1 and 2 cannot reach a over pub/sub
        _, top = await a.history("ch", limit=0)
        assert top.offset == 2
        assert offsets(a_got.publications) == [1, 2]  # before the reply goes out
    await eventually(lambda: a.link_up)
    await publish(b, "ch", 1)
    await eventually(lambda: offsets(a_got.publications) == [1, 2, 3])  # none twice
    assert a_lost == []


# Sentinel demotes the old primary ~10 s after a failover (it waits 4 hello periods of
# 2 s, then acts on its next 10-s INFO of it); until then the guarded primaries refuse
# writes (min-replicas-to-write). A deadline, not a wait: it bounds that schedule.
DEMOTION_DEADLINE = 40.0


@pytest.fixture
def private_sentinel() -> Iterator[SentinelSetup]:
    """A Sentinel setup of the test's own: a failover must not leave the session's shared
    one with its roles swapped under the tests that run after."""
    with sentinel_setup() as setup:
        yield setup


@pytest.mark.slow
async def test_sentinel_failover_keeps_acknowledged_publications(
    private_sentinel: SentinelSetup, stack: AsyncExitStack
) -> None:
    setup = private_sentinel

    def engine() -> RedisEngine:
        topology = Sentinel([parse_address(a) for a in setup.sentinel_addresses], setup.service)
        return RedisEngine(prefix="failover", topology=topology, backoff_base=0.05,
                           backoff_cap=0.5, io_timeout=2.0)

    a, _, _ = await started(stack, engine())
    b, b_got, b_lost = await started(stack, engine())
    await b.subscribe("ch")
    acknowledged = await publish(a, "ch", 10)
    sentinel = aioredis.Redis(port=setup.sentinels[0].port)
    try:
        _, old_port = await _primary(sentinel, setup.service)
        await _replicas_synced(int(old_port))
        await sentinel.execute_command("SENTINEL", "FAILOVER", setup.service)

        async def switched() -> bool:
            _, port = await _primary(sentinel, setup.service)
            return int(port) != int(old_port)

        await eventually(switched, timeout=30)
    finally:
        await sentinel.aclose()

    async def published() -> bool:
        try:
            acknowledged.extend(await publish(a, "ch", 1))
        except EngineError:
            return False
        return True

    await eventually(published, timeout=DEMOTION_DEADLINE)
    pubs, top = await a.history("ch", limit=-1)
    assert [p.offset for p in pubs] == [pos.offset for pos in acknowledged] == list(range(1, 12))
    assert {pos.epoch for pos in acknowledged} == {top.epoch}
    await eventually(lambda: offsets(b_got.publications) == list(range(1, 12)),
                     timeout=DEMOTION_DEADLINE)
    assert b_lost == []


async def _replicas_synced(primary_port: int) -> None:
    """Wait until the replica acknowledged everything the primary has (the engine does
    not WAIT for replicas: an unreplicated write can be lost by any failover)."""
    primary = aioredis.Redis(port=primary_port)
    try:

        async def synced() -> bool:
            info = await primary.info("replication")
            replica: Any = info.get("slave0")
            return bool(replica) and int(replica["offset"]) >= int(info["master_repl_offset"])

        await eventually(synced, timeout=10)
    finally:
        await primary.aclose()


async def _primary(sentinel: aioredis.Redis, service: str) -> tuple[str, int]:
    host, port = await sentinel.sentinel_get_master_addr_by_name(service)  # type: ignore[misc]
    return str(host), int(port)


async def test_publishes_retried_after_noscript_keep_their_lane(
    private_server: RedisServer, stack: AsyncExitStack
) -> None:
    """A server that lost its script cache (restart, failover) fails each publish with
    NOSCRIPT; the retry must go back into the ordered lane, where offsets are fanned out
    in the order Redis assigned them. Sent unordered, a parallel batch's retried
    publishes reached local subscribers out of offset order (seen in CI)."""
    engine, _, _ = await started(stack, RedisEngine(private_server.url, prefix="t"))
    batcher = engine._batcher
    assert batcher is not None
    lanes: list[bool] = []  # per command sent: True in the ordered lane
    submit = batcher.submit

    async def unordered(client: Any, queue: Any, **kwargs: Any) -> Any:
        lanes.append(False)
        return await submit(client, queue, **kwargs)

    batcher.submit = unordered  # type: ignore[method-assign]
    lane = batcher.lane(engine.topology.client("ch"))
    lane_submit = lane.submit

    def ordered(args: tuple[Any, ...], wait: Any = None) -> Any:
        lanes.append(True)
        return lane_submit(args, wait)

    lane.submit = ordered  # type: ignore[method-assign]
    await publish(engine, "warm", 1)  # the lane's connection loads the scripts first ...
    admin = aioredis.Redis(port=private_server.port)
    try:
        await admin.script_flush()  # ... and loses them here
    finally:
        await admin.aclose()
    lanes.clear()
    await publish(engine, "ch", 2)
    assert len(lanes) >= 3, "the first publish did not meet NOSCRIPT"
    assert all(lanes), f"a publish left the ordered lane: {lanes}"
