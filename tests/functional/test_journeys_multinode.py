"""Connection journeys across two nodes joined by the Redis engine (a redis-server of the
test's own): one user's session moves from node a to node b and reads as one journey
from either node, with the reconnect found across nodes and the recovery it made."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import ClientWebSocketResponse

from broker.auth import make_token
from tests.functional.conftest import SECRET, WAIT, RunningNode, base_config, run_node
from tests.functional.test_journeys import (
    ADMIN,
    flood_until_slow,
    journey,
    kinds,
    slow_reader,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.redis


def node_config(redis_url: str, name: str, **extra: Any) -> dict[str, Any]:
    return base_config(
        admin=ADMIN, chorus={"node_name": name},
        client={"queue_max_size": 256 * 1024},
        engine={"type": "redis", "redis": {"address": [redis_url], "prefix": "jn"}},
        channel={"without_namespace": {"history_size": 50, "history_ttl": "60s",
                                       "allow_recovery": True}},
        **extra)


@pytest.fixture
async def two_nodes(redis_url: str) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(run_node(node_config(redis_url, "a")))
        b = await stack.enter_async_context(run_node(node_config(redis_url, "b")))
        yield a, b


async def lines(ws: ClientWebSocketResponse) -> list[dict[str, Any]]:
    message = await ws.receive(timeout=WAIT)
    return [orjson.loads(line) for line in message.data.split("\n") if line]


async def connect(node: RunningNode, user: str, subscribe: dict[str, Any]
                  ) -> tuple[ClientWebSocketResponse, dict[str, Any]]:
    """A raw client of ``user``: connect and one subscribe; the subscribe result."""
    ws = await node.session.ws_connect(node.ws_url)
    await ws.send_str(json.dumps({"id": 1, "connect": {
        "token": make_token(SECRET, user), "name": "raw-journey", "version": "1.2"}})
        + "\n" + json.dumps({"id": 2, "subscribe": subscribe}))
    results: dict[int, Any] = {}
    while 2 not in results:
        for reply in await lines(ws):
            if "id" in reply:
                results[reply["id"]] = reply
    return ws, results[2]["subscribe"]


async def events_of(node: RunningNode, user: str) -> list[str]:
    return kinds((await journey(node, user))["events"])


async def test_a_journey_across_two_nodes_reads_as_one(
        two_nodes: tuple[RunningNode, RunningNode]) -> None:
    a, b = two_nodes
    ws, first = await connect(a, "zoe", {"channel": "feed", "recoverable": True})
    status, _ = await a.api("publish", {"channel": "feed", "data": {"n": 1}})
    assert status == 200
    pushed = await lines(ws)
    assert pushed[0]["push"]["pub"]["offset"] == 1
    ws._response.connection.transport.abort()  # type: ignore[union-attr]  # network loss
    await wait_until(lambda: _has(b, "zoe", "disconnect"),
                     "node a's disconnect, read through node b", timeout=WAIT)
    for n in (2, 3):  # missed while away
        await b.api("publish", {"channel": "feed", "data": {"n": n}})
    ws2, again = await connect(b, "zoe", {"channel": "feed", "recover": True,
                                          "recoverable": True, "offset": 1,
                                          "epoch": first["epoch"]})
    assert again["recovered"] and len(again["publications"]) == 2
    await wait_until(lambda: _has(a, "zoe", "reconnect"), "the reconnect across nodes",
                     timeout=WAIT)
    slow = await slow_reader(b, "zoe", "firehose")
    await flood_until_slow(b, "firehose")
    await slow.close()
    await ws2.close()
    await wait_until(lambda: _has(a, "zoe", "slow_consumer", "disconnect", "disconnect",
                                  "disconnect"), "the rest of zoe's journey", timeout=WAIT)

    for reader in (a, b):  # the same journey from either node
        body = await journey(reader, "zoe")
        events = body["events"]
        assert {e["node"] for e in events} == {"a", "b"}
        connects = [e for e in events if e["event"] == "connect"]
        assert [c["node"] for c in connects] == ["a", "b", "b"]
        assert (connects[0]["sdk"], connects[0]["sdk_version"]) == ("raw-journey", "1.2")
        dropped = next(e for e in events if e["event"] == "disconnect")
        assert (dropped["node"], dropped["code"]) == ("a", 1006)
        reconnect = next(e for e in events if e["event"] == "reconnect")
        assert (reconnect["node"], reconnect["previous_node"]) == ("b", "a")
        assert reconnect["previous_client"] == dropped["client"]
        assert 0 < reconnect["time_away"] < 2 * WAIT
        assert reconnect["missed"] == {"publications_replayed": 2, "recovered": ["feed"],
                                       "unrecovered": []}
        recovered = [e for e in events if e["event"] == "subscribe" and e["recovering"]]
        assert [(e["node"], e["recovered"], e["replayed"]) for e in recovered] == [
            ("b", True, 2)]
        first_pub = next(e for e in events if e["event"] == "first_publication")
        assert first_pub["node"] == "a" and first_pub["channel"] == "feed"
        slow_event = next(e for e in events if e["event"] == "slow_consumer")
        assert (slow_event["node"], slow_event["code"]) == ("b", 3008)
        assert body["funnel"] == {"connected": 3, "subscribed": 3, "first_publication": 3}
    # node b's aggregates counted the reconnect it found in the shared store
    _, overview = await b.api("journeys", {})
    assert overview["result"]["summary"]["reconnects"] == 1
    assert overview["result"]["summary"]["recovery_success_ratio"] == 1.0


async def _has(node: RunningNode, user: str, *wanted: str) -> bool:
    got = await events_of(node, user)
    return all(got.count(kind) >= wanted.count(kind) for kind in set(wanted))


async def test_streams_are_capped_and_expire(redis_url: str) -> None:
    config = node_config(redis_url, "solo", journeys={
        "stream_maxlen": 10, "all_stream_maxlen": 20, "stream_ttl": "30s"})
    async with run_node(config) as node:
        board = node.node.journeys
        assert board is not None
        events = [{"t": float(n), "event": "subscribe", "node": "solo", "client": "c",
                   "user": "yan", "channel": f"ch{n}"} for n in range(1000)]
        for start in range(0, 1000, 100):
            await board.store.append(events[start:start + 100])
        client = aioredis.Redis.from_url(redis_url)
        try:
            # MAXLEN ~ trims whole stream nodes (stream-node-max-entries, 100 by default)
            user_len = await client.xlen("jn:journey:{yan}")
            all_len = await client.xlen("jn:journey:all")
            assert 10 <= user_len <= 10 + 100 and 20 <= all_len <= 20 + 100
            ttl = await client.pttl("jn:journey:{yan}")
            assert 25_000 < ttl <= 30_000
        finally:
            await client.aclose()
        got = await board.store.user_events("yan", 5)
        assert [e["channel"] for e in got] == [f"ch{n}" for n in range(995, 1000)]
