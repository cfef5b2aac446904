"""Durable notifications end to end: server API, live delivery to every connection of a
user, unread on connect, client RPC, TTL — on the memory engine and on real Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.contract.helpers import eventually
from tests.functional.conftest import (
    RunningNode,
    base_config,
    next_event,
    run_node,
    sdk_client,
)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def node(request: pytest.FixtureRequest) -> AsyncIterator[RunningNode]:
    extra: dict[str, Any] = {
        "client": {"subscribe_to_user_personal_channel": {"enabled": True}},
        "channel": {"without_namespace": {"allow_user_limited_channels": True}},
    }
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        extra["engine"] = {"type": "redis", "redis": {"address": [url],
                                                       "prefix": f"t{id(request)}"}}
    async with run_node(base_config(**extra)) as running:
        yield running


def _note(ctx: Any) -> dict[str, Any]:
    data = ctx.pub.data
    value = json.loads(data) if isinstance(data, bytes | bytearray) else data
    assert ctx.channel == "#alice"
    return dict(value["notification"])


async def test_live_delivery_to_every_connection_of_the_user(node: RunningNode) -> None:
    async with sdk_client(node) as first, sdk_client(node, protobuf=True) as second, \
            sdk_client(node, user="bob") as bob:
        await next_event(first.events.subscribed)
        await next_event(second.events.subscribed)
        status, reply = await node.api("notify", {"user": "alice", "payload": {"x": 1},
                                                  "type": "greeting"})
        assert status == 200 and "id" in reply["result"]
        for client in (first, second):
            got = _note(await next_event(client.events.publications))
            assert (got["id"], got["type"], got["payload"], got["read"]) == (
                reply["result"]["id"], "greeting", {"x": 1}, False)
        assert bob.events.publications.empty()


async def test_offline_user_gets_unread_on_connect_then_marks_read(node: RunningNode) -> None:
    ids = []
    for i in range(3):
        _, reply = await node.api("notify", {"user": "alice", "payload": {"n": i}})
        ids.append(reply["result"]["id"])
    await node.api("notifications_mark_read", {"user": "alice", "ids": [ids[0]]})
    async with sdk_client(node) as alice:
        got = [_note(await next_event(alice.events.publications)) for _ in range(2)]
        assert [(g["id"], g["payload"]) for g in got] == [(ids[1], {"n": 1}),
                                                          (ids[2], {"n": 2})]
        result = await alice.client.rpc("notifications.mark_read",
                                        alice.payload({"ids": ids[1:]}))
        assert alice.value(result.data) == {"marked": 2}
        listed = await alice.client.rpc("notifications.list", alice.payload({}))
        assert [n["read"] for n in alice.value(listed.data)["notifications"]] == [True] * 3
    _, reply = await node.api("notifications", {"user": "alice", "unread_only": True})
    assert reply["result"] == {"notifications": []}
    async with sdk_client(node) as again:  # nothing unread: nothing pushed on connect
        await next_event(again.events.subscribed)
        await node.api("notify", {"user": "alice", "payload": "live"})
        assert _note(await next_event(again.events.publications))["payload"] == "live"


async def test_ttl_expires_and_api_lists_with_limit(node: RunningNode) -> None:
    await node.api("notify", {"user": "alice", "payload": 1, "ttl": 0.2})
    await node.api("notify", {"user": "alice", "payload": 2})
    await node.api("notify", {"user": "alice", "payload": 3})
    _, reply = await node.api("notifications", {"user": "alice", "limit": 1})
    assert [n["payload"] for n in reply["result"]["notifications"]] == [3]

    async def expired() -> bool:
        _, answer = await node.api("notifications", {"user": "alice"})
        return [n["payload"] for n in answer["result"]["notifications"]] == [2, 3]

    await eventually(expired)


async def test_bad_requests_are_answered(node: RunningNode) -> None:
    _, reply = await node.api("notify", {"user": "alice"})
    assert reply["error"]["code"] == 107
    _, reply = await node.api("notifications_mark_read", {"user": "alice", "ids": "x"})
    assert reply["error"]["code"] == 107
    async with sdk_client(node) as alice:
        with pytest.raises(Exception, match="bad request"):
            await alice.client.rpc("notifications.mark_read", alice.payload({"ids": 1}))
