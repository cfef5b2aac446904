"""Auto-pipelining: one pipeline per client per loop iteration, replies in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.engine.redis_batch import Batcher
from tests.waiting import wait_until


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


class SlowClient(FakeClient):
    """Every pipeline waits for the test to release it: replies come back when told."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[asyncio.Event] = []

    def pipeline(self, transaction: bool = False) -> FakePipeline:
        client = self

        class Gated(FakePipeline):
            async def execute(self, raise_on_error: bool = True) -> list[Any]:
                gate = asyncio.Event()
                client.gates.append(gate)
                await gate.wait()
                return await super().execute(raise_on_error)

        return Gated(self)


async def test_an_ordered_lane_keeps_one_pipeline_out_and_replies_in_order() -> None:
    """Ordered commands (publishes) never race each other on two connections: while a
    pipeline of the lane is out, the next ones gather and leave together after it."""
    batcher, client = Batcher(), SlowClient()
    done: list[int] = []

    async def submit(n: int) -> None:
        await batcher.submit(client, lambda p: p.echo(n), ordered=True)
        done.append(n)

    first = asyncio.create_task(submit(1))
    await wait_until(lambda: len(client.gates) == 1, "the first pipeline out")
    later = [asyncio.create_task(submit(n)) for n in (2, 3)]
    unordered = asyncio.create_task(batcher.submit(client, lambda p: p.echo(9)))
    # other commands are not held behind the lane ...
    await wait_until(lambda: len(client.gates) == 2, "the unordered pipeline out")
    await asyncio.sleep(0.02)
    assert len(client.gates) == 2  # ... but 2 and 3 are: not sent on another connection
    client.gates[1].set()
    assert await unordered == 9
    client.gates[0].set()
    await first
    await wait_until(lambda: len(client.gates) == 3, "the held pipeline out")
    client.gates[2].set()
    await asyncio.gather(*later)
    assert done == [1, 2, 3]
    assert client.executed == [[9], [1], [2, 3]]
