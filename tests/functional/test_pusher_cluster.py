"""Pusher across two nodes on one real redis-server: triggers, presence and client events
cross nodes as Centrifugo-protocol traffic does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from tests.functional.conftest import RunningNode, _merge, run_node
from tests.functional.pusherkit import (
    auth_backend,
    call,
    needs_pusher_js,
    pusher_config,
    pusher_js,
    server_lib,
)

pytestmark = [pytest.mark.redis, *needs_pusher_js]


@pytest.fixture
async def two_nodes(redis_url: str) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    mapping = _merge(pusher_config(), {
        "engine": {"type": "redis", "redis": {"address": [redis_url], "prefix": "pz"}}})
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(run_node(mapping))
        second = await stack.enter_async_context(run_node(mapping))
        yield first, second


async def test_a_trigger_on_one_node_reaches_pusher_js_on_the_other(two_nodes):
    first, second = two_nodes
    async with auth_backend(second) as backend, pusher_js(second, backend) as js:
        await js.expect("connected")
        await js.call("subscribe", channel="private-feed")
        await js.expect("members", lambda e: e["channel"] == "private-feed")
        await call(server_lib(first).trigger, "private-feed", "tick", {"n": 1})
        got = await js.expect("message")
        assert (got["channel"], got["name"], got["data"]) == ("private-feed", "tick", {"n": 1})


async def test_presence_members_and_client_events_are_cluster_wide(two_nodes):
    first, second = two_nodes
    names = iter(["ann", "bob"])
    assigned: dict[str, str] = {}

    def user_for(socket_id: str) -> str:
        return assigned.setdefault(socket_id, next(names))

    async with auth_backend(first, user_for) as backend, pusher_js(first, backend) as ann:
        await ann.expect("connected")
        await ann.call("subscribe", channel="presence-hall")
        assert (await ann.expect("members"))["ids"] == ["ann"]
        async with pusher_js(second, backend) as bob:
            await bob.expect("connected")
            await bob.call("subscribe", channel="presence-hall")
            assert (await bob.expect("members"))["ids"] == ["ann", "bob"]
            assert (await ann.expect("member_added"))["id"] == "bob"
            users = await call(server_lib(second).users_info, "presence-hall")
            assert sorted(u["id"] for u in users["users"]) == ["ann", "bob"]
            await ann.call("bind", channel="presence-hall", name="client-wave")
            await bob.call("trigger", channel="presence-hall", event="client-wave",
                           data={"hi": 1})
            wave = await ann.expect("bound")
            assert wave["data"] == {"hi": 1} and wave["user_id"] == "bob"
            await bob.call("disconnect")
            assert (await ann.expect("member_removed"))["id"] == "bob"
