"""Cluster-wide channel listings (broker.survey) with two real nodes on a real
redis-server: the server API's ``channels`` and Pusher's ``GET channels`` /
``subscription_count`` (through the official ``pusher`` library) count every node's
subscribers, and a node that is gone makes them fail within the survey timeout, never hang.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pusher
import pytest

from broker.cluster import NODE_TTL
from broker.survey import SURVEY_TIMEOUT
from tests.functional.conftest import RunningNode, _merge, base_config, run_node
from tests.functional.pusherkit import call, pusher_config, server_lib
from tests.functional.test_multinode import connect
from tests.functional.test_pusher_cluster import raw_socket, subscribe_raw
from tests.waiting import wait_until

pytestmark = pytest.mark.redis


def redis_engine(redis_url: str, prefix: str) -> dict:
    return {"engine": {"type": "redis", "redis": {"address": [redis_url], "prefix": prefix}}}


async def knows(node: RunningNode, other: RunningNode) -> None:
    """Wait until ``node`` has heard ``other``'s heartbeat (its directory lists it)."""
    def listed() -> bool:
        return other.node.uid in {i["uid"] for i in node.node.directory.alive(time.time())}
    await wait_until(listed, "the other node's heartbeat", timeout=10)


@asynccontextmanager
async def two_nodes_serving(mapping: dict) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    """Two nodes of ``mapping``, once the first has heard the second's heartbeat."""
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(run_node(mapping))
        second = await stack.enter_async_context(run_node(mapping))
        await knows(first, second)
        yield first, second


@pytest.fixture
async def two_nodes(redis_url: str) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    mapping = _merge(base_config(client={"insecure": True}), redis_engine(redis_url, "sv"))
    async with two_nodes_serving(mapping) as nodes:
        yield nodes


async def test_channels_lists_the_other_nodes_channels_with_summed_counts(
        two_nodes: tuple[RunningNode, RunningNode]) -> None:
    first, second = two_nodes
    sockets = []  # held: a socket the test drops is closed by the garbage collector
    sockets.append(await connect(second, "only-b"))
    sockets.append(await connect(second, "only-b"))
    sockets.append(await connect(second, "both"))
    sockets.append(await connect(first, "both"))
    sockets.append(await connect(first, "only-a"))
    status, body = await first.api("channels", {})
    assert status == 200
    assert body == {"result": {"channels": {
        "only-b": {"num_clients": 2}, "both": {"num_clients": 2},
        "only-a": {"num_clients": 1}}}}
    _, body = await first.api("channels", {"pattern": "only-*"})
    assert body["result"]["channels"] == {"only-b": {"num_clients": 2},
                                          "only-a": {"num_clients": 1}}
    assert second.node.surveys.table.outcomes["answered"] == 2
    await knows(second, first)  # the second node asks too, once it has heard the first
    _, body = await second.api("channels", {"pattern": "b*"})
    assert body["result"]["channels"] == {"both": {"num_clients": 2}}


async def test_channels_in_a_parallel_batch_are_cluster_wide_too(
        two_nodes: tuple[RunningNode, RunningNode]) -> None:
    first, second = two_nodes
    sockets = []  # held: a socket the test drops is closed by the garbage collector
    sockets.append(await connect(second, "room"))
    status, body = await first.api("batch", {"parallel": True, "commands": [
        {"channels": {}}, {"channels": {"pattern": "ro*"}}, {"info": {}}]})
    assert status == 200
    replies = body["replies"]
    assert replies[0] == replies[1] == {"channels": {"channels": {"room": {"num_clients": 1}}}}


@pytest.mark.slow  # waits for the dead node to age out of the directory (NODE_TTL)
async def test_a_dead_node_fails_channels_within_the_timeout_until_it_is_forgotten(
        redis_url: str) -> None:
    mapping = _merge(base_config(client={"insecure": True}), redis_engine(redis_url, "sd"))
    sockets = []  # held: a socket the test drops is closed by the garbage collector
    async with run_node(mapping) as first:
        sockets.append(await connect(first, "here"))
        async with run_node(mapping) as second:
            sockets.append(await connect(second, "gone"))
            await knows(first, second)
            _, body = await first.api("channels", {})
            assert set(body["result"]["channels"]) == {"here", "gone"}
        # The second node is gone; the first still counts it alive until NODE_TTL.
        started = time.monotonic()
        status, body = await first.api("channels", {})
        elapsed = time.monotonic() - started
        assert status == 200
        assert body == {"error": {"code": 100, "message": "internal server error"}}
        assert SURVEY_TIMEOUT - 0.1 <= elapsed < SURVEY_TIMEOUT + 1.5
        assert first.node.surveys.table.outcomes["incomplete"] == 1
        await wait_until(lambda: not first.node.directory.alive(time.time()),
                         "the dead node to age out", timeout=NODE_TTL + 5)
        started = time.monotonic()
        _, body = await first.api("channels", {})
        assert body == {"result": {"channels": {"here": {"num_clients": 1}}}}
        assert time.monotonic() - started < 1.0


async def test_channels_on_the_memory_engine_answer_at_once() -> None:
    sockets = []  # held: a socket the test drops is closed by the garbage collector
    async with run_node(base_config(client={"insecure": True})) as node:
        sockets.append(await connect(node, "solo"))
        started = time.monotonic()
        _, body = await node.api("channels", {})
        assert body == {"result": {"channels": {"solo": {"num_clients": 1}}}}
        assert time.monotonic() - started < 0.5
        assert node.node.surveys.table.pending == {}


@pytest.fixture
async def two_pusher_nodes(redis_url: str) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    async with two_nodes_serving(_merge(pusher_config(), redis_engine(redis_url, "sp"))) as nodes:
        yield nodes


async def test_pusher_channels_and_subscription_count_are_cluster_wide(
        two_pusher_nodes: tuple[RunningNode, RunningNode]) -> None:
    first, second = two_pusher_nodes
    lib = server_lib(first)
    async with raw_socket(second) as b1, raw_socket(second) as b2, raw_socket(first) as a1:
        await subscribe_raw(b1, "news")
        await subscribe_raw(b2, "news")
        await subscribe_raw(b2, "sports")
        await subscribe_raw(a1, "news")
        listed = await call(lib.channels_info)
        assert listed == {"channels": {"news": {}, "sports": {}}}
        assert await call(lib.channels_info, "spo") == {"channels": {"sports": {}}}
        news = await call(lib.channel_info, "news", ["subscription_count"])
        assert news == {"occupied": True, "subscription_count": 3}
        sports = await call(lib.channel_info, "sports", ["subscription_count"])
        assert sports == {"occupied": True, "subscription_count": 1}
        empty = await call(lib.channel_info, "nothing", ["subscription_count"])
        assert empty == {"occupied": False, "subscription_count": 0}


@pytest.mark.slow  # the second node must stop while the first still counts it alive
async def test_pusher_channels_fail_within_the_timeout_when_a_node_is_gone(
        redis_url: str) -> None:
    mapping = _merge(pusher_config(), redis_engine(redis_url, "sq"))
    async with run_node(mapping) as first:
        async with run_node(mapping) as second:
            await knows(first, second)
        started = time.monotonic()
        with pytest.raises(pusher.errors.PusherBadStatus, match="503"):
            await call(server_lib(first).channel_info, "news", ["subscription_count"])
        assert time.monotonic() - started < SURVEY_TIMEOUT + 1.5
