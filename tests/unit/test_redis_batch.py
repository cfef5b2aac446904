"""Auto-pipelining of unordered commands: one pipeline per client per loop iteration."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.engine.redis_batch import Batcher


class FakePipeline:
    """Records queued commands; replies with their argument, or raises if it is one."""

    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.queued: list[Any] = []

    def echo(self, value: Any) -> None:
        self.queued.append(value)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        self.client.executed.append(list(self.queued))
        if self.client.broken:
            raise ConnectionError("gone")
        return self.queued


class FakeClient:
    def __init__(self, broken: bool = False) -> None:
        self.executed: list[list[Any]] = []
        self.broken = broken

    def pipeline(self, transaction: bool = False) -> FakePipeline:
        return FakePipeline(self)


async def test_commands_of_one_iteration_share_one_pipeline_in_order() -> None:
    batcher, client = Batcher(), FakeClient()
    replies = await asyncio.gather(*(batcher.submit(client, lambda p, n=n: p.echo(n))
                                     for n in range(5)))
    assert replies == [0, 1, 2, 3, 4]
    assert client.executed == [[0, 1, 2, 3, 4]]
    assert (batcher.pipelines, batcher.commands) == (1, 5)


async def test_an_error_reply_fails_only_its_own_command() -> None:
    batcher, client = Batcher(), FakeClient()
    boom = ValueError("error reply")
    results = await asyncio.gather(batcher.submit(client, lambda p: p.echo(1)),
                                   batcher.submit(client, lambda p: p.echo(boom)),
                                   return_exceptions=True)
    assert results == [1, boom]


async def test_a_failed_pipeline_fails_every_command() -> None:
    batcher, client = Batcher(), FakeClient(broken=True)
    with pytest.raises(ConnectionError):
        await asyncio.gather(batcher.submit(client, lambda p: p.echo(1)),
                             batcher.submit(client, lambda p: p.echo(2)))


# The ordered lanes (publishes) run over a real connection: tests/contract/test_redis_lane.py.


def test_the_lane_packs_commands_as_redis_py_does() -> None:
    from redis.asyncio.connection import Connection

    from broker.engine.redis_lane import pack

    conn = Connection()
    for args in [("PUBLISH", "chorus.ch.{é}", b"p0::\x00\r\n\xff"), ("EVALSHA", "ab", 3, -1, 0),
                 ("WAIT", 1, 1000), ("SET", "k", 1.5), ("PING",)]:
        assert pack(args) == b"".join(conn.pack_command(*args)), args
    with pytest.raises(TypeError):
        pack(("SET", "k", None))
    with pytest.raises(TypeError):
        pack(("SET", "k", True))
