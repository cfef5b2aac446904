"""History and recovery read through a node that did not write (issue 12, item 1).

Two nodes on one real Redis. Node B writes; node A has no local subscriber, so its L1
knows nothing of B's publications and must not answer from what it once loaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import orjson
import pytest

from tests.functional.conftest import RunningNode, base_config, run_node
from tests.functional.test_multinode import connect, replies
from tests.waiting import wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
async def writer_and_reader(redis_url: str) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    mapping = base_config(
        client={"insecure": True},
        engine={"type": "redis", "redis": {"address": [redis_url], "prefix": "mh"}},
        channel={"without_namespace": {"history_size": 50, "history_ttl": "60s",
                                       "allow_recovery": True, "allow_history_for_client": True}},
    )
    async with AsyncExitStack() as stack:
        writer = await stack.enter_async_context(run_node(mapping))
        reader = await stack.enter_async_context(run_node(mapping))
        yield writer, reader


async def publish(node: RunningNode, channel: str, values: range) -> None:
    for n in values:
        status, body = await node.api("publish", {"channel": channel, "data": {"n": n}})
        assert status == 200 and body["result"]["offset"] == n, body


async def api_history(node: RunningNode, channel: str) -> tuple[list[int], int]:
    status, body = await node.api("history", {"channel": channel, "limit": -1})
    assert status == 200, body
    result = body["result"]
    return [p["offset"] for p in result.get("publications", [])], result["offset"]


async def test_history_through_a_node_without_subscribers_follows_the_writer(
        writer_and_reader: tuple[RunningNode, RunningNode]) -> None:
    writer, reader = writer_and_reader
    await publish(writer, "ledger", range(1, 4))
    assert await api_history(reader, "ledger") == ([1, 2, 3], 3)
    await publish(writer, "ledger", range(4, 7))
    assert await api_history(writer, "ledger") == ([1, 2, 3, 4, 5, 6], 6)
    assert await api_history(reader, "ledger") == ([1, 2, 3, 4, 5, 6], 6)


async def test_client_history_and_recovery_through_the_other_node(
        writer_and_reader: tuple[RunningNode, RunningNode]) -> None:
    writer, reader = writer_and_reader
    await publish(writer, "feed", range(1, 4))
    assert await api_history(reader, "feed") == ([1, 2, 3], 3)  # loads the reader's L1
    await publish(writer, "feed", range(4, 7))
    ws = await reader.session.ws_connect(reader.ws_url)
    await ws.send_str('{"id":1,"connect":{}}\n' + orjson.dumps(
        {"id": 2, "history": {"channel": "feed", "limit": -1}}).decode())
    got: dict[int, dict] = {}
    while 2 not in got:
        for reply in await replies(ws):
            got[reply.get("id", 0)] = reply
    history = got[2]["history"]
    assert [p["offset"] for p in history["publications"]] == [1, 2, 3, 4, 5, 6]
    assert history["offset"] == 6
    epoch = history["epoch"]
    await ws.close()
    # A recovering subscribe from offset 2 through the reader gets 3..6 and recovered.
    ws = await reader.session.ws_connect(reader.ws_url)
    await ws.send_str('{"id":1,"connect":{}}\n' + orjson.dumps(
        {"id": 2, "subscribe": {"channel": "feed", "recoverable": True, "recover": True,
                                "offset": 2, "epoch": epoch}}).decode())
    got = {}
    while 2 not in got:
        for reply in await replies(ws):
            got[reply.get("id", 0)] = reply
    result = got[2]["subscribe"]
    assert result.get("recovered") is True
    assert [p["offset"] for p in result["publications"]] == [3, 4, 5, 6]
    await ws.close()


async def test_a_subscribed_reader_answers_from_l1_and_stays_current(
        writer_and_reader: tuple[RunningNode, RunningNode]) -> None:
    writer, reader = writer_and_reader
    ws = await connect(reader, "live")
    await publish(writer, "live", range(1, 4))
    await wait_until(lambda: reader.node.deliveries >= 3, "the reader's subscriber got 1..3")
    assert await api_history(reader, "live") == ([1, 2, 3], 3)
    await publish(writer, "live", range(4, 6))
    await wait_until(lambda: reader.node.deliveries >= 5, "the reader's subscriber got 4..5")
    assert await api_history(reader, "live") == ([1, 2, 3, 4, 5], 5)
    await ws.close()
    # The last subscriber left: the reader no longer follows the stream on the engine.
    await wait_until(lambda: reader.node.subscriptions == 0, "the subscription is gone")
    await publish(writer, "live", range(6, 8))
    assert await api_history(reader, "live") == ([1, 2, 3, 4, 5, 6, 7], 7)
