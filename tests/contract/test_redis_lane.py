"""The ordered lane (broker.engine.redis_lane) against a real redis-server.

A blocking ``WAIT 1 <ms>`` (no replica ever answers it) holds a batch's replies back for
a known time, so the tests can see several batches on the wire at once and what a broken
connection does to them.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from broker.engine.redis_lane import Lane, ReplicasMissing
from tests.redis_server import RedisServer, redis_server, respawn
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary"),
]

SCRIPT = "return ARGV[1] .. '!'"
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with redis_server() as running:
        yield running


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis(port=server.port, socket_timeout=5.0)
    yield redis
    await redis.aclose()


@pytest.fixture
async def lane(client: aioredis.Redis) -> AsyncIterator[Lane]:
    opened = Lane(client, [("SCRIPT", "LOAD", SCRIPT)])
    yield opened
    await opened.close()


async def test_one_iteration_is_one_batch_and_replies_keep_submission_order(
    lane: Lane,
) -> None:
    futures = [lane.submit(("INCR", "n")) for _ in range(5)]
    assert await asyncio.gather(*futures) == [1, 2, 3, 4, 5]
    assert (lane.batches, lane.commands) == (1, 5)


async def test_later_batches_do_not_wait_for_earlier_replies(lane: Lane) -> None:
    """While the first batch's reply is held up (a blocking WAIT), the next batches are
    written anyway, and every batch resolves in submission order."""
    done: list[str] = []

    def track(future: asyncio.Future[object], name: str) -> asyncio.Future[object]:
        future.add_done_callback(lambda _: done.append(name))
        return future

    slow = track(lane.submit(("WAIT", 1, 300)), "slow")
    await wait_until(lambda: lane.batches == 1, "the first batch written")
    second = track(lane.submit(("INCR", "n")), "second")
    await wait_until(lambda: lane.batches == 2, "the second batch written")
    third = track(lane.submit(("INCR", "n")), "third")
    await wait_until(lambda: lane.batches == 3, "the third batch written")
    assert not slow.done()  # three batches on the wire at once
    assert await asyncio.gather(slow, second, third) == [0, 1, 2]
    assert done == ["slow", "second", "third"]


async def test_an_error_reply_fails_only_its_own_command(lane: Lane) -> None:
    results = await asyncio.gather(lane.submit(("INCR", "n")), lane.submit(("NOSUCHCMD",)),
                                   lane.submit(("INCR", "n")), return_exceptions=True)
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ResponseError)


async def test_scripts_of_the_preamble_are_loaded_on_every_new_connection(
    server: RedisServer, client: aioredis.Redis, lane: Lane
) -> None:
    assert await lane.submit(("EVALSHA", SHA, 0, "a")) == b"a!"
    await client.script_flush()
    await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    # The lane notices the closed connection before writing: a new one, scripts loaded.
    await wait_until(lambda: _closed(lane), "the lane's connection seen closed")
    assert await lane.submit(("EVALSHA", SHA, 0, "b")) == b"b!"


async def test_open_takes_the_connection_and_loads_the_preamble_first(
    client: aioredis.Redis, lane: Lane
) -> None:
    await lane.open()
    await wait_until(lambda: not lane._sent, "the preamble's replies read")
    assert await client.script_exists(SHA) == [True]
    assert await lane.submit(("EVALSHA", SHA, 0, "a")) == b"a!"
    assert (lane.batches, lane.commands) == (1, 1)


async def test_a_server_restarted_while_the_lane_idles_fails_nothing(
    server: RedisServer, lane: Lane
) -> None:
    assert await lane.submit(("EVALSHA", SHA, 0, "a")) == b"a!"
    server.process.terminate()
    server.process.wait(timeout=10)
    with respawn(server):
        await wait_until(lambda: _closed(lane), "the lane's connection seen closed")
        # An empty server: no script cache, yet EVALSHA works on the first try.
        assert await lane.submit(("EVALSHA", SHA, 0, "b")) == b"b!"


async def test_a_broken_connection_fails_what_is_on_it_and_later_commands_reconnect(
    client: aioredis.Redis, lane: Lane
) -> None:
    slow = lane.submit(("WAIT", 1, 2000))
    await wait_until(lambda: lane.batches == 1, "the batch written")
    stuck = lane.submit(("INCR", "n"))
    await wait_until(lambda: lane.batches == 2, "the second batch written")
    await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    for future in (slow, stuck):
        with pytest.raises(RedisConnectionError):
            await future
    assert await lane.submit(("INCR", "n")) >= 1  # whether or not INCR ran, it is unknown


async def test_wait_covers_the_batch_and_fails_what_asked_for_more_replicas(
    lane: Lane,
) -> None:
    plain = lane.submit(("INCR", "n"))
    wanted = lane.submit(("INCR", "n"), wait=(1, 50))  # there is no replica
    assert await plain == 1
    with pytest.raises(ReplicasMissing) as missing:
        await wanted
    assert missing.value.result == 2 and missing.value.confirmed == 0


async def test_close_fails_what_is_outstanding(lane: Lane) -> None:
    slow = lane.submit(("WAIT", 1, 2000))
    await wait_until(lambda: lane.batches == 1, "the batch written")
    await lane.close()
    with pytest.raises(ConnectionError):
        await slow
    with pytest.raises(ConnectionError):
        lane.submit(("INCR", "n"))


def _closed(lane: Lane) -> bool:
    conn = lane._conn  # what the lane checks before writing
    stream = getattr(conn, "_reader", None)
    return conn is None or stream is None or stream.at_eof()
