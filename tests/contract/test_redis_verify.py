"""The VERIFY script on a real server (broker.engine.redis_doubt): what it finds, and
what the other nodes do when it moves a channel's epoch."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
import redis.asyncio as aioredis

from broker.engine.redis import RedisEngine
from broker.engine.redis_doubt import Doubt, Outcome, verifier
from tests.contract.helpers import Recorder, eventually, start_linked

pytestmark = pytest.mark.redis


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[tuple[RedisEngine, RedisEngine, Recorder,
                                                       list[str]]]:
    prefix = f"verify-{uuid.uuid4().hex[:8]}"
    received, unrecoverable = Recorder(), []
    async with AsyncExitStack() as stack:
        first = RedisEngine(redis_url, prefix=prefix)
        second = RedisEngine(redis_url, prefix=prefix)
        second.set_handlers(received.on_publication, received.on_control,
                            on_unrecoverable=unrecoverable.append)
        for engine in (first, second):
            stack.push_async_callback(await start_linked(engine))
        yield first, second, received, unrecoverable


async def verify(engine: RedisEngine, channel: str, doubt: Doubt) -> tuple[Outcome, str, bool]:
    return await verifier(engine._run, engine.keys, "publish", None)(channel, doubt)


async def stored_digest(engine: RedisEngine, url: str, offset: int) -> str:
    client = aioredis.from_url(url)
    try:
        [(_, fields)] = await client.xrange(engine.keys.stream("c"), f"{offset}-0",
                                            f"{offset}-0")
        return hashlib.sha1(fields[b"d"]).hexdigest()
    finally:
        await client.aclose()


async def test_held_entries_are_held_and_a_different_one_moves_the_epoch(
        nodes: tuple[RedisEngine, RedisEngine, Recorder, list[str]], redis_url: str) -> None:
    first, second, received, unrecoverable = nodes
    await second.subscribe("c")
    _, position = await first.publish("c", b"1", history_size=10, history_ttl=60)
    digest = await stored_digest(first, redis_url, 1)

    outcome, server, confirmed = await verify(first, "c", Doubt(position.epoch, 1, {1: digest}))
    assert (outcome, confirmed) == (Outcome.HELD, True) and len(server) == 40
    # The same server vouches for what it stored, whatever the digests say.
    assert (await verify(first, "c", Doubt(position.epoch, 1, {1: "0" * 40}, server=server))
            )[0] is Outcome.HELD

    assert (await verify(first, "c", Doubt(position.epoch, 1, {1: "0" * 40})))[0] \
        is Outcome.DIVERGED
    await eventually(lambda: unrecoverable == ["c"])  # the other node resyncs at once
    _, moved = await first.publish("c", b"2", history_size=10, history_ttl=60)
    assert moved.epoch != position.epoch and moved.offset == 2
    await eventually(lambda: [p.data for _, p, _ in received.publications] == [b"1", b"2"])
    assert unrecoverable == ["c"]
    # Verified again: the epoch already moved.
    assert (await verify(first, "c", Doubt(position.epoch, 1, {1: digest})))[0] \
        is Outcome.MOVED


async def test_a_stream_below_what_was_seen_moves_the_epoch(
        nodes: tuple[RedisEngine, RedisEngine, Recorder, list[str]]) -> None:
    first, _, _, _ = nodes
    _, position = await first.publish("c", b"1", history_size=10, history_ttl=60)
    assert (await verify(first, "c", Doubt(position.epoch, 1)))[0] is Outcome.HELD
    assert (await verify(first, "c", Doubt(position.epoch, 3)))[0] is Outcome.DIVERGED


async def test_a_channel_whose_meta_is_gone_has_moved(
        nodes: tuple[RedisEngine, RedisEngine, Recorder, list[str]]) -> None:
    first, _, _, _ = nodes
    assert (await verify(first, "gone", Doubt("e", 1, force=True)))[0] is Outcome.MOVED
