"""Stream-state loading with the official Python SDK (``get_state``, centrifuge-python
0.7, "requires Centrifugo >= 6.8"): the app loads its state and a stream position, the
SDK subscribes from it with the reject-unrecovered flag, and a position the history no
longer covers comes back as error 112, upon which the SDK loads the state again.

Runs against the configuration the SDK's own tests use (see test_centrifugo_config), in
the "smallhistory" namespace: two publications of history.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from centrifuge import StreamPosition, SubscribedContext

from broker.auth import make_token
from broker.config import load_config
from tests.functional.conftest import (
    WAIT,
    SdkClient,
    next_event,
    run_node,
    sdk_client,
)
from tests.functional.test_centrifugo_config import COMPOSE_ENV, SDK_SECRET

pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is .* bytes long")


def sub_token(user: str, channel: str) -> str:
    return make_token(SDK_SECRET, user, channel=channel)


async def publish(publisher: SdkClient, channel: str, *values: int) -> None:
    """Publish through a subscribed client: that config has no API key."""
    sub = publisher.client.get_subscription(channel)
    assert sub is not None
    for value in values:
        await sub.publish(publisher.payload({"n": value}))


class StateLoader:
    """The app's side: ``get_state`` reads the stream position first (as the SDK's
    docstring asks), through the history of a subscribed helper client, and counts
    its calls."""

    def __init__(self, reader: SdkClient, channel: str, epoch: str | None = None) -> None:
        self.reader, self.channel, self.epoch = reader, channel, epoch
        self.calls: list[StreamPosition] = []

    async def __call__(self, channel: str) -> StreamPosition:
        assert channel == self.channel
        sub = self.reader.client.get_subscription(channel)
        assert sub is not None
        top = await sub.history(limit=0)
        position = StreamPosition(top.offset, top.epoch if self.epoch is None else self.epoch)
        self.calls.append(position)
        return position


def values(sdk: SdkClient, pubs: list[Any]) -> list[int]:
    return [sdk.value(p.data)["n"] for p in pubs]


async def test_unrecoverable_position_reloads_state_instead_of_recovered_false(
        protobuf: bool) -> None:
    channel = "smallhistory:board"
    async with run_node(load_config(env=COMPOSE_ENV)) as node, \
            sdk_client(node, protobuf=protobuf, token=make_token(SDK_SECRET, "pub")) as pub, \
            sdk_client(node, protobuf=protobuf, token=make_token(SDK_SECRET, "app")) as app:
        await pub.subscribe(channel, token=sub_token("pub", channel))
        await publish(pub, channel, 1)
        loader = StateLoader(pub, channel)
        sub, events = await app.subscribe(channel, token=sub_token("app", channel),
                                          get_state=loader)
        first = await next_event(events.subscribed)
        assert first.recovered and loader.calls == [StreamPosition(1, first.stream_position.epoch)]
        await publish(pub, channel, 2)
        assert values(app, [await next_event(events.publications)]) == [2]

        # Away while three more are published: history (2) no longer holds offset 3.
        await app.client.disconnect()
        await publish(pub, channel, 3, 4, 5)
        await app.client.connect()

        again: SubscribedContext = await next_event(events.subscribed)
        # The server answered 112 (no "recovered: false" subscription ever reached the
        # app); the SDK called get_state again and subscribed from the new position.
        assert len(loader.calls) == 2 and loader.calls[1].offset == 5
        assert again.was_recovering and again.recovered
        assert events.subscribed.empty() and events.publications.empty()
        await publish(pub, channel, 6)
        got = await next_event(events.publications)
        assert values(app, [got]) == [6] and got.offset == 6
        assert sub.state.value == "subscribed"


async def test_recovery_succeeds_without_reloading_state(protobuf: bool) -> None:
    channel = "smallhistory:calm"
    async with run_node(load_config(env=COMPOSE_ENV)) as node, \
            sdk_client(node, protobuf=protobuf, token=make_token(SDK_SECRET, "pub")) as pub, \
            sdk_client(node, protobuf=protobuf, token=make_token(SDK_SECRET, "app")) as app:
        await pub.subscribe(channel, token=sub_token("pub", channel))
        loader = StateLoader(pub, channel)
        _, events = await app.subscribe(channel, token=sub_token("app", channel),
                                        get_state=loader)
        await next_event(events.subscribed)
        await app.client.disconnect()
        await publish(pub, channel, 1, 2)  # history still holds both
        await app.client.connect()
        again = await next_event(events.subscribed)
        assert again.recovered and len(loader.calls) == 1
        got = [await next_event(events.publications) for _ in range(2)]
        assert values(app, got) == [1, 2]


async def test_a_position_without_epoch_recovers_from_its_offset(protobuf: bool) -> None:
    """An app that keeps only offsets (``epoch: ""``) recovers from that offset in the
    current epoch, as in Centrifugo."""
    channel = "ticks"  # without namespace: 100 publications of history
    async with run_node(load_config(env=COMPOSE_ENV)) as node, \
            sdk_client(node, protobuf=protobuf, token=make_token(SDK_SECRET, "pub")) as pub, \
            sdk_client(node, protobuf=protobuf, token=make_token(SDK_SECRET, "app")) as app:
        await pub.subscribe(channel, token=sub_token("pub", channel))
        await publish(pub, channel, 1, 2, 3, 4)

        async def from_offset_two(_: str) -> StreamPosition:
            return StreamPosition(2, "")

        _, events = await app.subscribe(channel, token=sub_token("app", channel),
                                        get_state=from_offset_two)
        subscribed = await next_event(events.subscribed)
        assert subscribed.was_recovering and subscribed.recovered
        assert subscribed.stream_position.epoch  # the real epoch, learned from the reply
        got = [await next_event(events.publications) for _ in range(2)]
        assert values(app, got) == [3, 4] and [p.offset for p in got] == [3, 4]


async def test_reject_unrecovered_over_the_raw_protocol() -> None:
    """The flag bit itself (2), without an SDK: 112 instead of ``recovered: false``, and
    the refused subscription leaves nothing behind (a second try may subscribe)."""
    channel = "smallhistory:raw"
    async with run_node(load_config(env=COMPOSE_ENV)) as node, \
            node.session.ws_connect(node.ws_url) as ws:
        async def call(command: dict[str, Any]) -> dict[str, Any]:
            await ws.send_str(json.dumps(command))
            while True:
                reply: dict[str, Any] = json.loads(await ws.receive_str(timeout=WAIT))
                if reply.get("id") == command["id"]:
                    return reply

        await call({"id": 1, "connect": {"token": make_token(SDK_SECRET, "raw")}})
        token = sub_token("raw", channel)
        ok = await call({"id": 2, "subscribe": {"channel": channel, "token": token}})
        epoch = ok["subscribe"]["epoch"]
        for n in range(3):
            await call({"id": 3 + n, "publish": {"channel": channel, "data": {"n": n}}})
        await call({"id": 6, "unsubscribe": {"channel": channel}})
        stale = {"channel": channel, "token": token, "recover": True, "epoch": epoch,
                 "offset": 0}
        refused = await call({"id": 7, "subscribe": {**stale, "flag": 2}})
        assert refused["error"]["code"] == 112
        [conn] = node.node.connections.values()
        assert channel not in conn.session.subs  # rolled back: shard, presence, counts
        assert node.node.channel_subscribers[channel] == 0
        plain = await call({"id": 8, "subscribe": stale})  # no flag: Centrifugo v5 semantics
        assert plain["subscribe"]["was_recovering"] is True
        assert "recovered" not in plain["subscribe"]  # false is left out on the wire
