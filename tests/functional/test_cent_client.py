"""The official Centrifugo server API client, ``cent`` (PyPI, centrifugal/pycent), against a
live node: every method it has for the server API we implement, through its own request
and result models (pydantic, validated), so a shape it cannot read fails here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import WSMsgType
from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    ChannelsRequest,
    Client,
    Disconnect,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    StreamPosition,
    SubscribeRequest,
    UnsubscribeRequest,
)
from cent.exceptions import CentApiResponseError, CentUnauthorizedError

from broker.auth import make_token
from tests.functional.conftest import (
    API_KEY,
    SECRET,
    WAIT,
    RunningNode,
    base_config,
    next_event,
    run_node,
    sdk_client,
)

CONFIG = base_config(channel={
    "without_namespace": {"history_size": 10, "history_ttl": "60s", "presence": True},
    "namespaces": [{"name": "bare", "allow_subscribe_for_client": True}],
})


@asynccontextmanager
async def cent_client(node: RunningNode, key: str = API_KEY) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(f"http://127.0.0.1:{node.port}/api", key, timeout=5.0)
    try:
        yield client
    finally:
        await client._session.close()  # cent 5 has no public close on AsyncClient


async def test_publish_broadcast_history_and_history_remove() -> None:
    async with run_node(CONFIG) as node, cent_client(node) as cent:
        first = await cent.publish(PublishRequest(channel="news", data={"n": 1},
                                                  tags={"kind": "t"}))
        assert first.offset == 1 and first.epoch
        again = await cent.publish(PublishRequest(channel="news", data={"n": 1},
                                                  idempotency_key="once"))
        same = await cent.publish(PublishRequest(channel="news", data={"n": 1},
                                                 idempotency_key="once"))
        assert again.offset == same.offset == 2

        broadcast = await cent.broadcast(BroadcastRequest(channels=["news", "bare:x"],
                                                          data="both"))
        assert len(broadcast.responses) == 2
        assert broadcast.responses[0].result is not None
        assert broadcast.responses[0].result.offset == 3

        history = await cent.history(HistoryRequest(channel="news", limit=-1))
        assert [p.data for p in history.publications] == [{"n": 1}, {"n": 1}, "both"]
        assert history.publications[0].tags == {"kind": "t"}
        assert (history.offset, history.epoch) == (3, first.epoch)
        since = await cent.history(HistoryRequest(
            channel="news", limit=10, since=StreamPosition(offset=2, epoch=first.epoch)))
        assert [p.offset for p in since.publications] == [3]
        newest = await cent.history(HistoryRequest(channel="news", limit=1, reverse=True))
        assert [p.offset for p in newest.publications] == [3]

        await cent.history_remove(HistoryRemoveRequest(channel="news"))
        emptied = await cent.history(HistoryRequest(channel="news", limit=-1))
        assert emptied.publications == [] and emptied.offset == 3


async def test_presence_channels_info_and_user_commands() -> None:
    async with run_node(CONFIG) as node, cent_client(node) as cent, \
            sdk_client(node, user="alice") as alice:
        _, events = await alice.subscribe("room")

        presence = await cent.presence(PresenceRequest(channel="room"))
        assert [info.user for info in presence.presence.values()] == ["alice"]
        stats = await cent.presence_stats(PresenceStatsRequest(channel="room"))
        assert (stats.num_clients, stats.num_users) == (1, 1)

        channels = await cent.channels(ChannelsRequest(pattern="ro*"))
        assert {name: c.num_clients for name, c in channels.channels.items()} == {"room": 1}
        info = await cent.info(InfoRequest())
        assert len(info.nodes) == 1 and info.nodes[0].num_clients == 1

        await cent.subscribe(SubscribeRequest(user="alice", channel="bare:pushed"))
        assert (await next_event(alice.events.subscribed)).channel == "bare:pushed"
        await cent.unsubscribe(UnsubscribeRequest(user="alice", channel="bare:pushed"))
        assert (await next_event(alice.events.unsubscribed)).channel == "bare:pushed"

        await cent.disconnect(DisconnectRequest(  # alice's only client is spared
            user="alice", whitelist=[alice.client_id], disconnect=Disconnect(code=4501)))
        await cent.disconnect(DisconnectRequest(
            user="alice", disconnect=Disconnect(code=4500, reason="bye")))
        gone = await next_event(alice.events.disconnected)
        assert (gone.code, gone.reason) == (4500, "bye")
        assert events.publications.empty()


async def test_refresh_sets_expiry_and_info_or_expires_the_connection() -> None:
    async with run_node(CONFIG) as node, cent_client(node) as cent, \
            node.session.ws_connect(node.ws_url) as ws:
        await ws.send_json({"id": 1, "connect": {"token": make_token(SECRET, "bob")}})
        client_id = (await ws.receive_json(timeout=WAIT))["connect"]["client"]
        await ws.send_json({"id": 2, "subscribe": {"channel": "room"}})
        assert "subscribe" in await ws.receive_json(timeout=WAIT)

        expire_at = int(time.time()) + 3600
        await cent.refresh(RefreshRequest(user="bob", expire_at=expire_at))
        push = (await ws.receive_json(timeout=WAIT))["push"]["refresh"]
        assert push["expires"] is True and 3590 <= push["ttl"] <= 3600

        status, _ = await node.api("refresh", {"user": "bob", "info": {"role": "vip"}})
        assert status == 200
        assert (await ws.receive_json(timeout=WAIT))["push"] == {"refresh": {}}  # no expiry
        await ws.send_json({"id": 3, "subscribe": {"channel": "room2"}})  # with the new info
        assert "subscribe" in await ws.receive_json(timeout=WAIT)
        presence = await cent.presence(PresenceRequest(channel="room2"))
        assert [p.conn_info for p in presence.presence.values()] == [{"role": "vip"}]

        await cent.refresh(RefreshRequest(user="other", expired=True))  # not bob's
        await cent.refresh(RefreshRequest(user="bob", client=client_id, expired=True))
        closed = await ws.receive(timeout=WAIT)
        assert closed.type is WSMsgType.CLOSE and closed.data == 3005

        with pytest.raises(CentApiResponseError) as bad:
            await cent.refresh(RefreshRequest(user="bob", expire_at=-1))
        assert bad.value.code == 107


async def test_batch_replies_in_order_and_errors_raise() -> None:
    async with run_node(CONFIG) as node, cent_client(node) as cent:
        batch = await cent.batch(BatchRequest(requests=[
            PublishRequest(channel="b", data=1),
            PublishRequest(channel="b", data=2),
            HistoryRequest(channel="b", limit=-1),
        ], parallel=False))
        first, second, history = batch.replies
        assert (first.offset, second.offset) == (1, 2)  # type: ignore[attr-defined]
        assert [p.data for p in history.publications] == [1, 2]  # type: ignore[attr-defined]

        with pytest.raises(CentApiResponseError) as unknown:
            await cent.publish(PublishRequest(channel="nowhere:x", data=1))
        assert unknown.value.code == 102
    async with run_node(CONFIG) as node, cent_client(node, key="wrong") as cent:
        with pytest.raises(CentUnauthorizedError):
            await cent.publish(PublishRequest(channel="news", data=1))


async def test_sync_client() -> None:
    async with run_node(CONFIG) as node:
        def publish_and_read() -> tuple[int, list[object]]:
            with Client(f"http://127.0.0.1:{node.port}/api", API_KEY, timeout=5.0) as cent:
                offset = cent.publish(PublishRequest(channel="sync", data="x")).offset
                history = cent.history(HistoryRequest(channel="sync", limit=-1))
                return offset, [p.data for p in history.publications]

        assert await asyncio.to_thread(publish_and_read) == (1, ["x"])
