"""Channel compaction (subscribe flag bit 1, namespace ``allow_channel_compaction``):
the subscribe result carries a numeric ``id`` and the publication, join and leave pushes
that follow carry it in place of the channel name. The official Python SDK (0.7) always
offers the flag and routes pushes by the id; centrifuge-js does too (test_node_sdk).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from broker.auth import make_token
from broker.connection.outbox import Outbox
from broker.protocol import JSON_CODEC, PROTOBUF_CODEC
from tests.functional.conftest import (
    SECRET,
    WAIT,
    RunningNode,
    base_config,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)


def compact_config(allow: bool = True) -> dict[str, Any]:
    return base_config(channel={"namespaces": [{
        "name": "room", "allow_subscribe_for_client": True, "allow_channel_compaction": allow,
        "join_leave": True, "force_push_join_leave": True, "presence": True}]})


class Wire:
    """Every push written to any outbox: (client id, decoded push, frame bytes); an
    outbox counts as a client's once ``tag`` named it."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, dict[str, Any], bytes]] = []
        self.owners: dict[int, str] = {}

    def tag(self, node: RunningNode, client_id: str) -> None:
        self.owners[id(node.node.connections[client_id].outbox)] = client_id

    def of(self, client: str, kind: str) -> list[dict[str, Any]]:
        return [push for owner, push, _ in self.pushes if owner == client and kind in push]


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    recorded = Wire()
    original = Outbox.push

    def push(self: Outbox, frame: bytes, *args: Any, **kwargs: Any) -> Any:
        for reply in (PROTOBUF_CODEC if self.binary else JSON_CODEC).decode_replies(frame):
            if "push" in reply:
                recorded.pushes.append((recorded.owners.get(id(self), ""), reply["push"],
                                        frame))
        return original(self, frame, *args, **kwargs)

    monkeypatch.setattr(Outbox, "push", push)
    return recorded


async def test_sdk_negotiates_compaction_and_routes_pushes_by_id(
        protobuf: bool, wire: Wire) -> None:
    async with run_node(compact_config()) as node, \
            sdk_client(node, protobuf=protobuf, user="ann") as ann, \
            sdk_client(node, protobuf=not protobuf, user="ben") as ben:
        for sdk in (ann, ben):
            wire.tag(node, sdk.client_id)
        sub, ann_events = await ann.subscribe("room:1")
        channel_id = node.node.channel_ids["room:1"]
        assert channel_id > 0 and sub._push_id == channel_id  # the SDK keeps it privately
        _, ben_events = await ben.subscribe("room:1")
        assert (await next_event(ann_events.joins)).user == "ann"
        assert (await next_event(ann_events.joins)).user == "ben"  # join pushed by id
        status, _ = await node.api("publish", {"channel": "room:1", "data": {"n": 1}})
        assert status == 200
        for sdk, events in ((ann, ann_events), (ben, ben_events)):
            pub = await next_event(events.publications)
            assert sdk.value(pub.data) == {"n": 1}
        await ben.client.disconnect()
        assert (await next_event(ann_events.leaves)).user == "ben"  # leave pushed by id
        for sdk in (ann, ben):
            pubs, joins = wire.of(sdk.client_id, "pub"), wire.of(sdk.client_id, "join")
            assert pubs and joins
            assert all(p["id"] == channel_id and "channel" not in p for p in pubs + joins)
        assert wire.of(ann.client_id, "leave")[0]["id"] == channel_id


async def test_compacting_subscribers_of_one_format_share_one_frame(wire: Wire) -> None:
    async with run_node(compact_config()) as node, \
            sdk_client(node, user="a") as first, sdk_client(node, user="b") as second:
        for sdk in (first, second):
            await sdk.subscribe("room:2")
        await node.api("publish", {"channel": "room:2", "data": "x"})
        await wait_until(lambda: len([p for p in wire.pushes if "pub" in p[1]]) == 2,
                         "both publication pushes")
        frames = [frame for _, push, frame in wire.pushes if "pub" in push]
        assert frames[0] is frames[1]  # encoded once, the same bytes in both outboxes


async def test_without_the_namespace_option_pushes_carry_the_channel(
        protobuf: bool, wire: Wire) -> None:
    async with run_node(compact_config(allow=False)) as node, \
            sdk_client(node, protobuf=protobuf) as sdk:
        wire.tag(node, sdk.client_id)
        sub, events = await sdk.subscribe("room:3")
        assert sub._push_id == 0 and "room:3" not in node.node.channel_ids
        await node.api("publish", {"channel": "room:3", "data": {"n": 1}})
        assert sdk.value((await next_event(events.publications)).data) == {"n": 1}
        [push] = wire.of(sdk.client_id, "pub")
        assert push["channel"] == "room:3" and "id" not in push


class RawClient:
    """A JSON-protocol client without an SDK; ``next`` skips to the reply it wants (a
    WebSocket message may hold several, one per line)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.buffered: list[dict[str, Any]] = []

    async def send(self, command: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(command))

    async def next(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            while self.buffered:
                reply = self.buffered.pop(0)
                if wanted(reply):
                    return reply
            text = await self.ws.receive_str(timeout=WAIT)
            self.buffered = [json.loads(line) for line in text.splitlines() if line]


async def test_raw_protocol_compaction_is_opt_in_per_subscriber() -> None:
    """Without the SDK: the result's ``id``, the push shape, a subscriber that does not
    set the flag in the same channel, and a fresh id once the channel emptied."""
    async with run_node(compact_config()) as node:
        async def client(user: str) -> RawClient:
            raw = RawClient(await node.session.ws_connect(node.ws_url))
            await raw.send({"id": 1, "connect": {"token": make_token(SECRET, user)}})
            await raw.next(lambda reply: reply.get("id") == 1)
            return raw

        def reply_to(cmd_id: int) -> Callable[[dict[str, Any]], bool]:
            return lambda reply: reply.get("id") == cmd_id

        def publication(reply: dict[str, Any]) -> bool:
            return "pub" in reply.get("push", {})

        compact, plain = await client("c"), await client("p")
        await compact.send({"id": 2, "subscribe": {"channel": "room:4", "flag": 1}})
        channel_id = (await compact.next(reply_to(2)))["subscribe"]["id"]
        await plain.send({"id": 2, "subscribe": {"channel": "room:4"}})
        assert "id" not in (await plain.next(reply_to(2)))["subscribe"]
        await node.api("publish", {"channel": "room:4", "data": {"n": 1}})
        pub = (await compact.next(publication))["push"]
        assert pub == {"id": channel_id, "pub": {"data": {"n": 1}}}
        pub = (await plain.next(publication))["push"]
        assert pub == {"channel": "room:4", "pub": {"data": {"n": 1}}}
        for raw in (compact, plain):
            await raw.send({"id": 3, "unsubscribe": {"channel": "room:4"}})
            await raw.next(reply_to(3))
        await wait_until(lambda: "room:4" not in node.node.channel_ids, "the id released")
        await compact.send({"id": 4, "subscribe": {"channel": "room:4", "flag": 1}})
        again = (await compact.next(reply_to(4)))["subscribe"]["id"]
        assert again not in (0, channel_id)  # a new id: ids are never reused
        for raw in (compact, plain):
            await raw.ws.close()
