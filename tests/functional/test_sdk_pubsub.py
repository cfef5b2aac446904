"""Subscribe, publish and receive with the official Python SDK, over JSON and protobuf:
server API and client publishes, ordering, unsubscribe, join/leave, refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from centrifuge import ReplyError

from tests.functional.conftest import base_config, next_event, run_node, sdk_client

HISTORY = {"history_size": 100, "history_ttl": "60s", "allow_recovery": True}


def chat_config(**chat: Any) -> dict[str, Any]:
    """A ``chat`` namespace with ``chat`` options over the test defaults."""
    options = {"allow_subscribe_for_client": True, **chat}
    return base_config(channel={"namespaces": [{"name": "chat", **options}]})


async def test_api_publish_reaches_subscriber_with_offset(protobuf: bool) -> None:
    async with run_node(base_config(channel={"without_namespace": HISTORY})) as node, \
            sdk_client(node, protobuf=protobuf) as sdk:
        _, events = await sdk.subscribe("news", recoverable=True)
        subscribed = await next_event(events.subscribed)
        assert subscribed.recoverable and subscribed.stream_position is not None
        status, body = await node.api("publish", {"channel": "news", "data": {"text": "hi"}})
        assert status == 200 and body["result"]["offset"] == 1
        pub = await next_event(events.publications)
        assert sdk.value(pub.data) == {"text": "hi"}
        assert pub.offset == 1
        assert pub.info is None  # published by the server, not by a client


async def test_publications_arrive_in_order(protobuf: bool) -> None:
    async with run_node(base_config(channel={"without_namespace": HISTORY})) as node, \
            sdk_client(node, protobuf=protobuf) as sdk:
        _, events = await sdk.subscribe("ticks")
        for n in range(1, 51):
            await node.api("publish", {"channel": "ticks", "data": {"n": n}})
        received = [await next_event(events.publications) for _ in range(50)]
        assert [sdk.value(p.data)["n"] for p in received] == list(range(1, 51))
        assert [p.offset for p in received] == list(range(1, 51))


async def test_json_and_protobuf_subscribers_get_the_same_publication() -> None:
    async with run_node(base_config()) as node, \
            sdk_client(node, protobuf=False, user="j") as json_sdk, \
            sdk_client(node, protobuf=True, user="p") as proto_sdk:
        _, json_events = await json_sdk.subscribe("mixed")
        _, proto_events = await proto_sdk.subscribe("mixed")
        await node.api("publish", {"channel": "mixed", "data": {"k": [1, "two", None]}})
        assert (await next_event(json_events.publications)).data == {"k": [1, "two", None]}
        assert (await next_event(proto_events.publications)).data == b'{"k":[1,"two",null]}'


async def test_client_publish_when_allowed_carries_publisher_info(protobuf: bool) -> None:
    config = chat_config(allow_publish_for_subscriber=True)
    async with run_node(config) as node, \
            sdk_client(node, protobuf=protobuf, user="writer") as writer, \
            sdk_client(node, protobuf=not protobuf, user="reader") as reader:
        writer_sub, _ = await writer.subscribe("chat:room")
        _, events = await reader.subscribe("chat:room")
        await writer_sub.publish(writer.payload({"msg": "hello"}))
        pub = await next_event(events.publications)
        assert reader.value(pub.data) == {"msg": "hello"}
        assert pub.info is not None
        assert (pub.info.user, pub.info.client) == ("writer", writer.client_id)


async def test_client_publish_without_permission_is_denied(protobuf: bool) -> None:
    async with run_node(chat_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        sub, events = await sdk.subscribe("chat:room")
        with pytest.raises(ReplyError) as denied:
            await sub.publish(sdk.payload({"msg": "nope"}))
        assert denied.value.code == 103
        await node.api("publish", {"channel": "chat:room", "data": "marker"})
        assert sdk.value((await next_event(events.publications)).data) == "marker"


async def test_unsubscribed_client_gets_nothing_more(protobuf: bool) -> None:
    async with run_node(base_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        gone, gone_events = await sdk.subscribe("a")
        _, kept_events = await sdk.subscribe("b")
        await gone.unsubscribe()
        unsubscribed = await next_event(gone_events.unsubscribed)
        assert unsubscribed.code == 0  # unsubscribe() called
        await node.api("publish", {"channel": "a", "data": "dropped"})
        await node.api("publish", {"channel": "b", "data": "marker"})
        # Same connection, one outbox: had "a" been delivered, it would be there first.
        assert sdk.value((await next_event(kept_events.publications)).data) == "marker"
        assert gone_events.publications.empty()
        status, body = await node.api("channels", {})
        assert status == 200 and "a" not in body["result"]["channels"]


async def test_resubscribe_after_unsubscribe(protobuf: bool) -> None:
    async with run_node(base_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        sub, events = await sdk.subscribe("again")
        for round_ in range(3):
            await node.api("publish", {"channel": "again", "data": round_})
            assert sdk.value((await next_event(events.publications)).data) == round_
            await sub.unsubscribe()
            await next_event(events.unsubscribed)
            await sub.subscribe()
            await sub.ready(timeout=5)


async def test_join_and_leave(protobuf: bool) -> None:
    async with run_node(chat_config(join_leave=True)) as node, \
            sdk_client(node, protobuf=protobuf, user="watcher") as watcher, \
            sdk_client(node, protobuf=protobuf, user="visitor") as visitor:
        _, events = await watcher.subscribe("chat:hall", join_leave=True)
        own_join = await next_event(events.joins)
        assert own_join.user == "watcher"
        visit, _ = await visitor.subscribe("chat:hall")
        joined = await next_event(events.joins)
        assert (joined.user, joined.client) == ("visitor", visitor.client_id)
        await visit.unsubscribe()
        left = await next_event(events.leaves)
        assert (left.user, left.client) == ("visitor", visitor.client_id)


async def test_leave_is_sent_when_a_subscriber_disconnects(protobuf: bool) -> None:
    async with run_node(chat_config(join_leave=True, force_push_join_leave=True)) as node, \
            sdk_client(node, protobuf=protobuf, user="watcher") as watcher:
        _, events = await watcher.subscribe("chat:hall")  # forced: no join_leave asked
        await next_event(events.joins)
        async with sdk_client(node, protobuf=protobuf, user="passer") as passer:
            await passer.subscribe("chat:hall")
            assert (await next_event(events.joins)).user == "passer"
        assert (await next_event(events.leaves)).user == "passer"


async def test_no_join_leave_unless_asked(protobuf: bool) -> None:
    async with run_node(chat_config(join_leave=True)) as node, \
            sdk_client(node, protobuf=protobuf, user="quiet") as quiet, \
            sdk_client(node, protobuf=protobuf, user="other") as other:
        _, events = await quiet.subscribe("chat:calm")  # join_leave not requested
        await other.subscribe("chat:calm")
        await node.api("publish", {"channel": "chat:calm", "data": "marker"})
        await next_event(events.publications)
        assert events.joins.empty()


@pytest.mark.parametrize(("channel", "code"), [
    ("nowhere:x", 102),  # unknown namespace
    ("$private", 103),  # private channel without a subscription token
    ("closed:x", 103),  # subscribe not allowed for clients
])
async def test_refused_subscription_ends_unsubscribed(protobuf: bool, channel: str,
                                                      code: int) -> None:
    config = base_config(channel={"namespaces": [{"name": "closed"}]})
    async with run_node(config) as node, sdk_client(node, protobuf=protobuf) as sdk:
        _, events = await sdk.subscribe(channel, wait=False)
        unsubscribed = await next_event(events.unsubscribed)
        assert unsubscribed.code == code
        _, ok_events = await sdk.subscribe("open")  # the connection is still usable
        await node.api("publish", {"channel": "open", "data": 1})
        await next_event(ok_events.publications)


async def test_user_limited_channel(protobuf: bool) -> None:
    config = chat_config(allow_user_limited_channels=True, allow_subscribe_for_client=False)
    async with run_node(config) as node, \
            sdk_client(node, protobuf=protobuf, user="ann") as ann, \
            sdk_client(node, protobuf=protobuf, user="eve") as eve:
        _, ann_events = await ann.subscribe("chat:dm#ann,bob")
        _, eve_events = await eve.subscribe("chat:dm#ann,bob", wait=False)
        assert (await next_event(eve_events.unsubscribed)).code == 103
        await node.api("publish", {"channel": "chat:dm#ann,bob", "data": "psst"})
        assert ann.value((await next_event(ann_events.publications)).data) == "psst"


async def test_broadcast_reaches_every_channel(protobuf: bool) -> None:
    async with run_node(base_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        subs = await asyncio.gather(*(sdk.subscribe(f"b{i}") for i in range(3)))
        status, body = await node.api("broadcast", {"channels": ["b0", "b1", "b2"],
                                                    "data": {"all": True}})
        assert status == 200 and len(body["result"]["responses"]) == 3
        for _, events in subs:
            assert sdk.value((await next_event(events.publications)).data) == {"all": True}
