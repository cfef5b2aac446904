"""``client.subscribe_to_user_personal_channel.single_connection``: a user holds one
connection at a time. As Centrifugo v6 (``OnClientConnecting``): when a user connects,
the user's other connections — on every node — are disconnected with 3504
"connection limit" (terminal: the SDK does not reconnect them); the new one stays."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
from centrifuge import ClientState

from tests.functional.conftest import (
    RunningNode,
    base_config,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)


def single_config(**extra: Any) -> dict[str, Any]:
    config = base_config(
        client={"subscribe_to_user_personal_channel": {
            "enabled": True, "personal_channel_namespace": "personal",
            "single_connection": True}},
        channel={"namespaces": [{"name": "personal", "presence": True}]})
    for section, values in extra.items():  # one level deep is all these tests need
        config[section] = {**config.get(section, {}), **values}
    return config


def user_clients(node: RunningNode, user: str) -> list[str]:
    return node.node.user_connections(user)


async def test_a_new_connection_disconnects_the_users_older_one(protobuf: bool) -> None:
    async with run_node(single_config()) as node, \
            sdk_client(node, protobuf=protobuf, user="zoe") as first, \
            sdk_client(node, protobuf=protobuf, user="bob") as other_user:
        async with sdk_client(node, protobuf=not protobuf, user="zoe") as second:
            disconnected = await next_event(first.events.disconnected)
            assert (disconnected.code, disconnected.reason) == (3504, "connection limit")
            assert first.client.state is ClientState.DISCONNECTED  # 3504: no reconnect
            assert second.client.state is ClientState.CONNECTED
            await wait_until(lambda: user_clients(node, "zoe") == [second.client_id],
                             "only the new connection of zoe left")
            # The new connection is fully served: its personal channel delivers.
            await node.api("publish", {"channel": "personal:#zoe", "data": "hi"})
            publication = await next_event(second.events.publications)
            assert second.value(publication.pub.data) == "hi"
        assert other_user.client.state is ClientState.CONNECTED  # another user: untouched
        assert other_user.events.disconnected.empty()


async def test_without_single_connection_both_stay() -> None:
    config = single_config()
    config["client"]["subscribe_to_user_personal_channel"]["single_connection"] = False
    async with run_node(config) as node, sdk_client(node, user="zoe") as first, \
            sdk_client(node, user="zoe") as second:
        assert sorted(user_clients(node, "zoe")) == sorted([first.client_id,
                                                            second.client_id])
        assert first.events.disconnected.empty()


async def test_user_connection_limit_does_not_refuse_the_replacement() -> None:
    """With ``user_connection_limit: 1`` the new connection replaces the old one; it
    is not refused for the old one still being counted while it closes."""
    async with run_node(single_config(client={"user_connection_limit": 1})) as node, \
            sdk_client(node, user="zoe") as first, \
            sdk_client(node, user="zoe") as second:
        assert (await next_event(first.events.disconnected)).code == 3504
        assert second.client.state is ClientState.CONNECTED
        await wait_until(lambda: user_clients(node, "zoe") == [second.client_id],
                         "only the new connection of zoe left")


@pytest.mark.redis
async def test_a_connection_on_another_node_is_disconnected_too(redis_url: str) -> None:
    config = single_config(engine={"type": "redis", "redis": {
        "address": [redis_url], "prefix": "single-conn"}})
    async with AsyncExitStack() as stack:
        first_node = await stack.enter_async_context(run_node(config))
        second_node = await stack.enter_async_context(run_node(config))
        first = await stack.enter_async_context(sdk_client(first_node, user="zoe"))
        second = await stack.enter_async_context(sdk_client(second_node, user="zoe"))
        disconnected = await next_event(first.events.disconnected)
        assert disconnected.code == 3504
        assert first.client.state is ClientState.DISCONNECTED
        assert second.client.state is ClientState.CONNECTED
        await wait_until(lambda: not user_clients(first_node, "zoe"),
                         "zoe gone from the first node")
        assert user_clients(second_node, "zoe") == [second.client_id]
