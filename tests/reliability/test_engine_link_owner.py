"""The engine link actor owns the Redis pub/sub readers (issue 12).

Crashing the link actor stops its readers with it (nothing of the link runs unowned);
its supervisor restarts it, which starts them again, re-subscribes and catches up from
the streams — so a subscriber on that node still gets every publication another node
made meanwhile, once each and in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from tests.functional.conftest import RunningNode, base_config, run_node, sdk_client, wait_until

pytestmark = pytest.mark.redis

LINK = "chorus/engine/link"


@pytest.fixture
async def two_nodes(redis_url: str) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    mapping = base_config(
        admin={"allow_crash_actor": True},
        engine={"type": "redis", "redis": {"address": [redis_url], "prefix": "link"}},
        channel={"without_namespace": {"history_size": 1000, "history_ttl": "60s",
                                       "force_recovery": True}},
    )
    async with AsyncExitStack() as stack:
        writer = await stack.enter_async_context(run_node(mapping))
        reader = await stack.enter_async_context(run_node(mapping))
        yield writer, reader


async def test_link_actor_crash_stops_and_restarts_the_readers_losing_nothing(
        two_nodes: tuple[RunningNode, RunningNode]) -> None:
    writer, reader = two_nodes
    runtime, engine = reader.node.runtime, reader.node.engine
    async with sdk_client(reader, user="sub") as sdk:
        _, events = await sdk.subscribe("ticks")
        acked: list[int] = []
        stop = asyncio.Event()

        async def publish() -> None:
            n = 0
            while not stop.is_set():
                status, body = await writer.api("publish", {"channel": "ticks", "data": n})
                assert status == 200, body
                acked.append(body["result"]["offset"])
                n += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(publish())
        try:
            for _ in range(3):  # the engine supervisor allows 3 restarts in 5 s
                await wait_until(lambda: engine.link_up and len(acked) >= 10,
                                 "the link up and traffic flowing")
                generation = engine.link_generation
                runtime.crash_actor(LINK, "fault injection")
                # The readers went down with the actor, and came back under the new one.
                await wait_until(lambda g=generation: engine.link_generation > g,  # type: ignore[misc]
                                 "the restarted link actor to restart the readers")
                acked_before = len(acked)
                await wait_until(lambda n=acked_before: len(acked) >= n + 10,  # type: ignore[misc]
                                 "traffic after the restart")
        finally:
            stop.set()
            await task
        got: list[int] = []

        def caught_up() -> bool:
            while not events.publications.empty():
                got.append(events.publications.get_nowait().offset)
            return bool(got) and got[-1] >= acked[-1]

        await wait_until(caught_up, "the subscriber to get the last acknowledged offset")
        assert got == acked, "gaps or repeats across link restarts"
        record = runtime.registry.get(LINK)
        assert record is not None and record.restarts == 3
        assert sdk.events.connected.qsize() == 1  # the client itself was never dropped
