"""Presence and presence stats with the official Python SDK, over JSON and protobuf."""

from __future__ import annotations

from typing import Any

import pytest
from centrifuge import ReplyError

from broker.auth import make_token
from tests.functional.conftest import (
    SECRET,
    WAIT,
    RunningNode,
    base_config,
    run_node,
    sdk_client,
    wait_until,
)


def presence_config(**extra: Any) -> dict[str, Any]:
    return base_config(channel={"namespaces": [
        {"name": "room", "allow_subscribe_for_client": True, "presence": True,
         "allow_presence_for_subscriber": True, **extra},
        {"name": "plain", "allow_subscribe_for_client": True}]})


async def api_presence_clients(node: RunningNode, channel: str) -> int:
    _, body = await node.api("presence_stats", {"channel": channel})
    return int(body["result"]["num_clients"])


async def test_presence_lists_every_subscriber_with_conn_info(protobuf: bool) -> None:
    async with run_node(presence_config()) as node, \
            sdk_client(node, protobuf=protobuf,
                       token=make_token(SECRET, "ann", info={"role": "host"})) as ann, \
            sdk_client(node, protobuf=protobuf, user="ben") as ben, \
            sdk_client(node, protobuf=protobuf, user="ben") as ben_again:
        ann_sub, _ = await ann.subscribe("room:1")
        await ben.subscribe("room:1")
        await ben_again.subscribe("room:1")

        presence = await ann_sub.presence()
        assert set(presence.clients) == {ann.client_id, ben.client_id, ben_again.client_id}
        host = presence.clients[ann.client_id]
        assert (host.user, host.client) == ("ann", ann.client_id)
        assert ann.value(host.conn_info) == {"role": "host"}
        assert presence.clients[ben.client_id].user == "ben"

        stats = await ann_sub.presence_stats()
        assert (stats.num_clients, stats.num_users) == (3, 2)


async def test_presence_shrinks_when_clients_leave(protobuf: bool) -> None:
    async with run_node(presence_config()) as node, \
            sdk_client(node, protobuf=protobuf, user="stay") as stay:
        stay_sub, _ = await stay.subscribe("room:2")
        async with sdk_client(node, protobuf=protobuf, user="go") as go:
            go_sub, _ = await go.subscribe("room:2")
            async with sdk_client(node, protobuf=protobuf, user="drop") as drop:
                await drop.subscribe("room:2")
                stats = await stay_sub.presence_stats()
                assert (stats.num_clients, stats.num_users) == (3, 3)
                await go_sub.unsubscribe()  # leaves by unsubscribing ...
        # ... and "drop" (then "go" too) by disconnecting
        await presence_settles(node, "room:2", 1)
        presence = await stay_sub.presence()
        assert list(presence.clients) == [stay.client_id]


async def presence_settles(node: RunningNode, channel: str, clients: int) -> None:
    """Presence is removed by an effect after the socket closes: poll it, with a deadline."""

    async def settled() -> bool:
        return await api_presence_clients(node, channel) == clients

    await wait_until(settled, f"{clients} clients in the presence of {channel}", WAIT)


@pytest.mark.parametrize(("channel", "code"), [
    ("plain:1", 108),  # presence not enabled in the namespace
    ("room:other", 103),  # presence only for subscribers, and not subscribed to it
])
async def test_presence_refusals(protobuf: bool, channel: str, code: int) -> None:
    async with run_node(presence_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        await sdk.subscribe("plain:1")
        for call in (sdk.client.presence, sdk.client.presence_stats):
            with pytest.raises(ReplyError) as refused:
                await call(channel)
            assert refused.value.code == code
