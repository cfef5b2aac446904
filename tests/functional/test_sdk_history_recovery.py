"""History and recovery with the official Python SDK, over JSON and protobuf.

Recovery's promise: after a dropped connection a recoverable subscription gets every
publication it missed, once and in order, with ``recovered: true`` — or, when the gap
cannot be closed (history window overflowed, epoch changed), ``recovered: false``;
never a silent gap.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest
from centrifuge import ConnectingContext, ReplyError, StreamPosition

from tests.functional.conftest import (
    ClientEvents,
    RunningNode,
    base_config,
    drop_transport,
    next_event,
    run_node,
    sdk_client,
)
from tests.ports import reserved_port


def history_config(size: int = 100, **extra: Any) -> dict[str, Any]:
    options = {"history_size": size, "history_ttl": "60s", "allow_recovery": True,
               "allow_history_for_subscriber": True, **extra}
    return base_config(channel={"without_namespace": options})


async def publish(node: RunningNode, channel: str, *values: Any) -> None:
    for value in values:
        status, body = await node.api("publish", {"channel": channel, "data": value})
        assert status == 200 and "result" in body, body


async def test_history_limit_reverse_since(protobuf: bool) -> None:
    async with run_node(history_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        sub, _ = await sdk.subscribe("log")
        await publish(node, "log", *range(1, 11))

        everything = await sub.history(limit=-1)
        assert [p.offset for p in everything.publications] == list(range(1, 11))
        assert [sdk.value(p.data) for p in everything.publications] == list(range(1, 11))
        assert everything.offset == 10 and everything.epoch

        first = await sub.history(limit=3)
        assert [p.offset for p in first.publications] == [1, 2, 3]
        latest = await sub.history(limit=3, reverse=True)
        assert [p.offset for p in latest.publications] == [10, 9, 8]
        since = StreamPosition(offset=5, epoch=everything.epoch)
        after = await sub.history(limit=2, since=since)
        assert [p.offset for p in after.publications] == [6, 7]
        before = await sub.history(limit=2, since=since, reverse=True)
        assert [p.offset for p in before.publications] == [4, 3]

        position_only = await sub.history(limit=0)
        assert position_only.publications == []
        assert (position_only.offset, position_only.epoch) == (10, everything.epoch)


async def test_history_since_another_epoch_is_unrecoverable(protobuf: bool) -> None:
    async with run_node(history_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        sub, _ = await sdk.subscribe("log")
        await publish(node, "log", 1)
        with pytest.raises(ReplyError) as error:
            await sub.history(limit=10, since=StreamPosition(offset=0, epoch="not-it"))
        assert error.value.code == 112


async def test_history_refusals(protobuf: bool) -> None:
    config = base_config(channel={"namespaces": [
        {"name": "plain", "allow_subscribe_for_client": True},
        {"name": "kept", "allow_subscribe_for_client": True, "history_size": 10,
         "history_ttl": "60s"}]})
    async with run_node(config) as node, sdk_client(node, protobuf=protobuf) as sdk:
        plain, _ = await sdk.subscribe("plain:x")
        with pytest.raises(ReplyError) as not_available:
            await plain.history(limit=1)
        assert not_available.value.code == 108
        kept, _ = await sdk.subscribe("kept:x")
        with pytest.raises(ReplyError) as denied:
            await kept.history(limit=1)  # history for subscribers not allowed
        assert denied.value.code == 103


@pytest.mark.parametrize(("options", "asked", "recoverable"), [
    ({"allow_recovery": True}, False, False),
    ({"allow_recovery": True}, True, True),
    ({"force_recovery": True}, False, True),
    ({}, True, False),
], ids=["allowed-not-asked", "allowed-asked", "forced", "not-allowed"])
async def test_recoverable_only_when_allowed_and_asked_or_forced(
        protobuf: bool, options: dict[str, Any], asked: bool, recoverable: bool) -> None:
    config = base_config(channel={"without_namespace": {
        "history_size": 10, "history_ttl": "60s", **options}})
    async with run_node(config) as node, sdk_client(node, protobuf=protobuf) as sdk:
        _, events = await sdk.subscribe("maybe", recoverable=asked)
        assert (await next_event(events.subscribed)).recoverable is recoverable


class Gap:
    """Publishes while the SDK client is certainly disconnected: from its on_connecting."""

    def __init__(self, node: RunningNode, channel: str, values: list[Any]) -> None:
        self.node, self.channel, self.values = node, channel, values
        self.done = asyncio.Event()

    async def __call__(self, ctx: ConnectingContext) -> None:
        if not self.done.is_set():
            await publish(self.node, self.channel, *self.values)
            self.done.set()


async def test_recovery_delivers_what_was_missed(protobuf: bool) -> None:
    async with run_node(history_config()) as node:
        gap = Gap(node, "feed", [4, 5, 6])
        async with sdk_client(node, protobuf=protobuf, events=ClientEvents(gap)) as sdk:
            _, events = await sdk.subscribe("feed", recoverable=True)
            await publish(node, "feed", 1, 2, 3)
            assert [(await next_event(events.publications)).offset for _ in range(3)] == [
                1, 2, 3]
            drop_transport(sdk.client)
            await gap.done.wait()
            await next_event(events.subscribed)  # the first subscribe
            again = await next_event(events.subscribed)
            assert again.was_recovering and again.recovered
            missed = [await next_event(events.publications) for _ in range(3)]
            assert [(p.offset, sdk.value(p.data)) for p in missed] == [(4, 4), (5, 5), (6, 6)]
            await publish(node, "feed", 7)
            assert (await next_event(events.publications)).offset == 7


async def test_every_offset_once_in_order_across_a_dropped_connection(protobuf: bool) -> None:
    """Publishing never stops while the connection drops and recovers."""
    total = 60
    async with run_node(history_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        _, events = await sdk.subscribe("stream", recoverable=True)
        await next_event(events.subscribed)

        async def publisher() -> None:
            for n in range(1, total + 1):
                await publish(node, "stream", n)

        task = asyncio.create_task(publisher())
        offsets: list[int] = []
        while len(offsets) < 20:
            offsets.append((await next_event(events.publications)).offset)
        drop_transport(sdk.client)
        while not offsets or offsets[-1] < total:
            offsets.append((await next_event(events.publications)).offset)
        await task
        assert offsets == list(range(1, total + 1))
        again = await next_event(events.subscribed)
        assert again.was_recovering and again.recovered


async def test_overflowed_history_is_reported_not_recovered(protobuf: bool) -> None:
    async with run_node(history_config(size=3)) as node:
        gap = Gap(node, "small", [2, 3, 4, 5, 6])  # offset 2 falls out of a 3-deep window
        async with sdk_client(node, protobuf=protobuf, events=ClientEvents(gap)) as sdk:
            _, events = await sdk.subscribe("small", recoverable=True)
            await next_event(events.subscribed)
            await publish(node, "small", 1)
            assert (await next_event(events.publications)).offset == 1
            drop_transport(sdk.client)
            again = await next_event(events.subscribed)
            assert again.was_recovering and not again.recovered
            assert again.stream_position == StreamPosition(6, again.stream_position.epoch)
            await publish(node, "small", 7)
            assert (await next_event(events.publications)).offset == 7  # nothing before it


async def test_too_many_missed_for_the_recovery_limit(protobuf: bool) -> None:
    config = history_config()
    config["client"]["recovery_max_publication_limit"] = 2
    async with run_node(config) as node:
        gap = Gap(node, "busy", [2, 3, 4])
        async with sdk_client(node, protobuf=protobuf, events=ClientEvents(gap)) as sdk:
            _, events = await sdk.subscribe("busy", recoverable=True)
            await next_event(events.subscribed)
            await publish(node, "busy", 1)
            await next_event(events.publications)
            drop_transport(sdk.client)
            again = await next_event(events.subscribed)
            assert again.was_recovering and not again.recovered
            await publish(node, "busy", 5)
            assert (await next_event(events.publications)).offset == 5


async def test_changed_epoch_is_reported_not_recovered(protobuf: bool) -> None:
    """A memory-engine node restarting on the same address starts every stream anew."""
    async with AsyncExitStack() as outer:  # the client outlives the first node
        # Reserved outside the ephemeral range for the whole test: the client reconnecting
        # while no node listens could otherwise be given the port as its own local port
        # (a TCP self-connect) and hold it, and so could any other outbound connection.
        port = outer.enter_context(reserved_port())
        async with run_node(history_config(), port=port) as first:
            sdk = await outer.enter_async_context(sdk_client(first, protobuf=protobuf))
            _, events = await sdk.subscribe("epochs", recoverable=True)
            before = await next_event(events.subscribed)
            await publish(first, "epochs", "old-1", "old-2")
            await next_event(events.publications)
            await next_event(events.publications)
        async with run_node(history_config(), port=port) as second:
            again = await next_event(events.subscribed)
            assert again.was_recovering and not again.recovered
            assert before.stream_position is not None and again.stream_position is not None
            assert again.stream_position.epoch != before.stream_position.epoch
            await publish(second, "epochs", "new-2")
            pub = await next_event(events.publications)
            assert sdk.value(pub.data) == "new-2"
            await sdk.client.disconnect()
