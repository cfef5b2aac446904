"""Server-side subscriptions with the official Python SDK, over JSON and protobuf: the
token's ``channels`` claim, the server API's subscribe/unsubscribe, the personal channel."""

from __future__ import annotations

from typing import Any

from broker.auth import make_token
from tests.functional.conftest import (
    SECRET,
    ClientEvents,
    base_config,
    drop_transport,
    next_event,
    run_node,
    sdk_client,
)


def feed_config(**extra: Any) -> dict[str, Any]:
    return base_config(channel={"namespaces": [{"name": "feed", **extra}]})


async def test_token_channels_claim_subscribes_on_connect(protobuf: bool) -> None:
    token = make_token(SECRET, "alice", channels=["feed:a", "feed:b"])
    async with run_node(feed_config()) as node, \
            sdk_client(node, protobuf=protobuf, token=token) as sdk:
        subscribed = {(await next_event(sdk.events.subscribed)).channel for _ in range(2)}
        assert subscribed == {"feed:a", "feed:b"}
        await node.api("publish", {"channel": "feed:b", "data": {"v": 2}})
        ctx = await next_event(sdk.events.publications)
        assert (ctx.channel, sdk.value(ctx.pub.data)) == ("feed:b", {"v": 2})


async def test_api_subscribe_and_unsubscribe(protobuf: bool) -> None:
    async with run_node(feed_config()) as node, \
            sdk_client(node, protobuf=protobuf, user="target") as sdk, \
            sdk_client(node, protobuf=protobuf, user="bystander") as other:
        assert await node.api("subscribe", {"user": "target", "channel": "feed:news"}) == (
            200, {"result": {}})
        assert (await next_event(sdk.events.subscribed)).channel == "feed:news"
        await node.api("publish", {"channel": "feed:news", "data": "extra"})
        ctx = await next_event(sdk.events.publications)
        assert (ctx.channel, sdk.value(ctx.pub.data)) == ("feed:news", "extra")

        assert await node.api("unsubscribe", {"user": "target", "channel": "feed:news"}) == (
            200, {"result": {}})
        assert (await next_event(sdk.events.unsubscribed)).channel == "feed:news"
        assert other.events.subscribed.empty(), "only the named user is subscribed"
        status, body = await node.api("channels", {})
        assert status == 200 and "feed:news" not in body["result"]["channels"]


async def test_api_subscribe_one_client_of_a_user(protobuf: bool) -> None:
    async with run_node(feed_config()) as node, \
            sdk_client(node, protobuf=protobuf, user="twin") as first, \
            sdk_client(node, protobuf=protobuf, user="twin") as second:
        await node.api("subscribe", {"user": "twin", "client": second.client_id,
                                     "channel": "feed:only"})
        assert (await next_event(second.events.subscribed)).channel == "feed:only"
        await node.api("publish", {"channel": "feed:only", "data": 1})
        await next_event(second.events.publications)
        assert first.events.subscribed.empty() and first.events.publications.empty()


async def test_personal_channel(protobuf: bool) -> None:
    config = base_config(client={"subscribe_to_user_personal_channel": {
        "enabled": True, "personal_channel_namespace": "personal"}},
        channel={"namespaces": [{"name": "personal"}]})
    async with run_node(config) as node, \
            sdk_client(node, protobuf=protobuf, user="zoe") as zoe, \
            sdk_client(node, protobuf=protobuf, user="zoe") as zoe_phone:
        for sdk in (zoe, zoe_phone):
            assert (await next_event(sdk.events.subscribed)).channel == "personal:#zoe"
        await node.api("publish", {"channel": "personal:#zoe", "data": {"to": "zoe"}})
        for sdk in (zoe, zoe_phone):
            ctx = await next_event(sdk.events.publications)
            assert (ctx.channel, sdk.value(ctx.pub.data)) == ("personal:#zoe", {"to": "zoe"})


async def test_server_side_subscription_recovers_after_reconnect(protobuf: bool) -> None:
    config = base_config(channel={"namespaces": [{
        "name": "feed", "history_size": 10, "history_ttl": "60s", "force_recovery": True}]})
    token = make_token(SECRET, "alice", channels=["feed:r"])
    async with run_node(config) as node:
        published: list[Any] = []

        async def gap(_: Any) -> None:
            if not published:
                published.append(await node.api("publish", {"channel": "feed:r", "data": 2}))

        events = ClientEvents(gap)
        async with sdk_client(node, protobuf=protobuf, token=token, events=events) as sdk:
            await next_event(sdk.events.subscribed)
            await node.api("publish", {"channel": "feed:r", "data": 1})
            assert (await next_event(sdk.events.publications)).pub.offset == 1
            drop_transport(sdk.client)
            again = await next_event(sdk.events.subscribed)
            assert again.was_recovering and again.recovered
            assert sdk.events.unsubscribed.empty()
            assert (await next_event(sdk.events.publications, timeout=2)).pub.offset == 2
