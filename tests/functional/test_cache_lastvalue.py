"""Last-value channels (Centrifugo's cache recovery mode) through the official SDK: a
recovering subscriber gets the latest publication in its subscribe result, from L1 or,
when L1 lacks it, from the engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from centrifuge import StreamPosition

from tests.functional.conftest import (
    RunningNode,
    SdkClient,
    base_config,
    next_event,
    run_node,
    sdk_client,
)


def _ns(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "history_size": 1, "history_ttl": "60s", "force_recovery": True,
            "force_recovery_mode": "cache", "allow_subscribe_for_client": True, **extra}


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    config = base_config(channel={"namespaces": [
        _ns("lv"), _ns("auto", auto_cache_recover=True),
        _ns("big", history_size=10, auto_cache_recover=True),
        _ns("nocache", cache_policy="off", auto_cache_recover=True)]})
    async with run_node(config) as running:
        yield running


async def _publish(node: RunningNode, channel: str, *values: Any) -> None:
    for value in values:
        status, reply = await node.api("publish", {"channel": channel, "data": value})
        assert status == 200 and "error" not in reply


async def _since_empty(channel: str) -> StreamPosition:
    """The SDK's ``since: {}``: subscribe with recover from offset 0, epoch ""."""
    return StreamPosition(0, "")


async def test_recovering_subscriber_gets_the_latest_publication_from_l1(
        node: RunningNode, protobuf: bool) -> None:
    await _publish(node, "lv:now", {"v": 1}, {"v": 2}, {"v": 3})
    hits = node.node.cache.statistics().cache.hits
    async with sdk_client(node, protobuf=protobuf) as client:
        _, events = await client.subscribe("lv:now", get_state=_since_empty)
        ctx = await next_event(events.subscribed)
        assert (ctx.was_recovering, ctx.recovered) == (True, True)
        first = await next_event(events.publications)
        assert (first.offset, client.value(first.data)) == (3, {"v": 3})  # not the backlog
        assert node.node.cache.statistics().cache.hits == hits + 1  # served by L1
        await _publish(node, "lv:now", {"v": 4})
        live = await next_event(events.publications)
        assert (live.offset, client.value(live.data)) == (4, {"v": 4})
        assert events.publications.empty()


async def test_plain_subscriber_gets_it_with_auto_cache_recover_and_stream_mode_does_not(
        node: RunningNode) -> None:
    await _publish(node, "auto:now", "a", "b")
    await _publish(node, "lv:plain", "a", "b")
    async with sdk_client(node) as client:
        _, auto = await client.subscribe("auto:now")
        assert (await next_event(auto.subscribed)).recovered is True
        assert (await next_event(auto.publications)).data == "b"
        _, plain = await client.subscribe("lv:plain")  # no recover flag: Centrifugo sends none
        ctx = await next_event(plain.subscribed)
        assert ctx.was_recovering is False and ctx.stream_position.offset == 2
        await asyncio.sleep(0.1)  # nothing may follow the result
        assert plain.publications.empty()


@pytest.mark.parametrize("channel", ["big:x", "nocache:x"])
async def test_latest_comes_from_the_engine_when_l1_lacks_it(node: RunningNode,
                                                             channel: str) -> None:
    await _publish(node, channel, *range(1, 6))
    node.node.cache.invalidate(channel)
    async with sdk_client(node) as client:
        _, events = await client.subscribe(channel)
        assert (await next_event(events.subscribed)).recovered is True
        pub = await next_event(events.publications)
        assert (pub.offset, pub.data) == (5, 5)


async def test_empty_channel_is_not_recovered_and_the_first_publication_is_live(
        node: RunningNode) -> None:
    async with sdk_client(node) as client:
        _, events = await client.subscribe("auto:empty")
        ctx = await next_event(events.subscribed)
        assert (ctx.was_recovering, ctx.recovered) == (True, False)
        await _publish(node, "auto:empty", "first")
        pub = await next_event(events.publications)
        assert (pub.offset, pub.data) == (1, "first")


async def test_resubscribe_with_the_current_position_gets_nothing_twice(
        node: RunningNode) -> None:
    await _publish(node, "lv:same", "x")
    async with sdk_client(node) as client:
        sdk: SdkClient = client
        sub, events = await sdk.subscribe("lv:same", get_state=_since_empty)
        assert (await next_event(events.subscribed)).stream_position.offset == 0
        assert (await next_event(events.publications)).offset == 1
        await sub.unsubscribe()
        await sub.subscribe()  # recovers from offset 1: it already has the latest
        ctx = await next_event(events.subscribed)
        assert (ctx.recovered, ctx.stream_position.offset) == (True, 1)
        await asyncio.sleep(0.1)
        assert events.publications.empty()
