"""``channel_regex``: clients may use only the channel names their namespace's regex
accepts (Centrifugo v6's ``validateChannelName``: 107 bad request for subscribe, publish,
history, presence and presence_stats); the server API is not restricted, as in
Centrifugo."""

from __future__ import annotations

from typing import Any

import pytest
from centrifuge import ClientState, ReplyError

from tests.functional.conftest import base_config, next_event, run_node, sdk_client

OPEN = {"allow_subscribe_for_client": True, "allow_publish_for_client": True,
        "allow_history_for_client": True, "allow_presence_for_client": True,
        "presence": True, "history_size": 10, "history_ttl": "60s"}


def regex_config() -> dict[str, Any]:
    return base_config(channel={
        # Searched, not anchored (Go's MatchString): "^...$" asks for a whole match.
        "without_namespace": {**OPEN, "channel_regex": "^[a-z]+$"},
        "namespaces": [{"name": "orders", **OPEN, "channel_regex": r"^\d+$"},
                       {"name": "free", **OPEN}]})


async def test_subscribe_to_a_name_the_regex_refuses_is_107(protobuf: bool) -> None:
    async with run_node(regex_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        for refused in ("orders:12a", "orders:", "news1"):
            _, events = await sdk.subscribe(refused, wait=False)
            assert (await next_event(events.unsubscribed)).code == 107, refused
        # The part after "orders:" is checked; "free" has no regex; the connection stays.
        for allowed in ("orders:12", "news", "free:anything-1"):
            _, events = await sdk.subscribe(allowed)
            await node.api("publish", {"channel": allowed, "data": allowed})
            assert sdk.value((await next_event(events.publications)).data) == allowed
        assert sdk.client.state is ClientState.CONNECTED


@pytest.mark.parametrize("command", ["publish", "history", "presence", "presence_stats"])
async def test_other_client_commands_on_a_refused_name_are_107(protobuf: bool,
                                                               command: str) -> None:
    async with run_node(regex_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        client = sdk.client
        calls = {
            "publish": lambda channel: client.publish(channel, sdk.payload({"n": 1})),
            "history": lambda channel: client.history(channel, limit=1),
            "presence": lambda channel: client.presence(channel),
            "presence_stats": lambda channel: client.presence_stats(channel),
        }
        with pytest.raises(ReplyError) as refused:
            await calls[command]("orders:abc")
        assert refused.value.code == 107
        await calls[command]("orders:42")  # a matching name in the same namespace works


async def test_the_server_api_is_not_restricted() -> None:
    async with run_node(regex_config()) as node:
        status, body = await node.api("publish", {"channel": "orders:abc", "data": 1})
        assert status == 200 and "error" not in body
        status, body = await node.api("history", {"channel": "orders:abc", "limit": 1})
        assert status == 200 and len(body["result"]["publications"]) == 1
