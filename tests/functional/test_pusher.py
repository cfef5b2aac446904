"""Pusher clients over real sockets: pusher-js and Laravel Echo in Node, the official
``pusher`` server library for auth signatures and triggers (see ``pusherkit``)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time

import orjson
import pusher
import pytest
from aiohttp import ClientSession, WSMsgType

from tests.functional.conftest import (
    base_config,
    next_event,
    run_node,
    sdk_client,
)
from tests.functional.jsclient import JsClient
from tests.functional.pusherkit import (
    APP_ID,
    KEY,
    OTHER_KEY,
    SECRET,
    auth_backend,
    call,
    needs_pusher_js,
    pusher_config,
    pusher_js,
    server_lib,
)

pytestmark = needs_pusher_js


def on(channel: str) -> object:
    return lambda e: e.get("channel") == channel


async def subscribed(js: JsClient, channel: str) -> dict:
    await js.call("subscribe", channel=channel)
    return await js.expect("members", on(channel))


async def test_public_and_private_channels_get_events_triggered_by_the_server_library():
    async with run_node(pusher_config()) as node, auth_backend(node) as backend, \
            pusher_js(node, backend) as js:
        await js.expect("connected")
        await subscribed(js, "news")
        await subscribed(js, "private-orders")
        lib = server_lib(node)
        await call(lib.trigger, ["news", "private-orders"], "created", {"id": 7})
        got = [await js.expect("message"), await js.expect("message")]
        assert sorted((m["channel"], m["name"], m["data"]["id"]) for m in got) == [
            ("news", "created", 7), ("private-orders", "created", 7)]
        await call(lib.trigger_batch, [{"channel": "news", "name": "b1", "data": "plain"},
                                       {"channel": "news", "name": "b2", "data": "x"}])
        assert (await js.expect("message"))["data"] == "plain"
        assert (await js.expect("message"))["name"] == "b2"


async def test_a_bad_channel_signature_is_refused_and_the_node_serves_the_others():
    async with run_node(pusher_config()) as node, auth_backend(node) as backend, \
            pusher_js(node, backend) as good, pusher_js(node) as forged:
        await good.expect("connected")
        await forged.expect("connected")
        # ``forged`` has no backend (its auth endpoint refuses connections), so sign a
        # subscribe by hand with the wrong secret over a raw socket instead.
        async with ClientSession() as session, session.ws_connect(
                f"ws://127.0.0.1:{node.port}/app/{KEY}?protocol=7") as ws:
            hello = json.loads((await ws.receive()).data)
            socket_id = json.loads(hello["data"])["socket_id"]
            wrong = pusher.Pusher(app_id=APP_ID, key=KEY, secret="not-the-secret")
            auth = wrong.authenticate(channel="private-x", socket_id=socket_id)
            await ws.send_str(json.dumps({"event": "pusher:subscribe", "data": {
                "channel": "private-x", **auth}}))
            refused = json.loads((await ws.receive()).data)
            assert refused["event"] == "pusher:subscription_error"
            assert refused["data"]["status"] == 401
            await ws.send_str("{not json")
            error = json.loads((await ws.receive()).data)
            assert error["event"] == "pusher:error"
            await ws.send_str(json.dumps({"event": "pusher:ping", "data": {}}))
            assert json.loads((await ws.receive()).data)["event"] == "pusher:pong"
        await subscribed(good, "private-x")
        await call(server_lib(node).trigger, "private-x", "still", "served")
        assert (await good.expect("message"))["data"] == "served"


@pytest.mark.parametrize(("path", "code"), [
    ("/app/no-such-key?protocol=7", 4001),
    (f"/app/{KEY}", 4008),
    (f"/app/{KEY}?protocol=3", 4007),
])
async def test_refused_sockets_get_pushers_error_code_before_the_close(path: str, code: int):
    async with run_node(pusher_config()) as node, ClientSession() as session, \
            session.ws_connect(f"ws://127.0.0.1:{node.port}{path}") as ws:
        error = json.loads((await ws.receive()).data)
        assert error == {"event": "pusher:error", "data": {"code": code,
                                                          "message": error["data"]["message"]}}
        closing = await ws.receive()
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
        assert ws.close_code == code


async def test_over_max_connections_gets_4004_and_pusher_js_reports_it():
    async with run_node(pusher_config(max_connections=1)) as node, pusher_js(node) as first:
        await first.expect("connected")
        async with pusher_js(node) as second:
            error = await second.expect("error", lambda e: e["code"] == 4004)
            assert "quota" in error["message"]


async def test_presence_members_and_member_events_are_per_user():
    users = iter(["ann", "bob"])
    assigned: dict[str, str] = {}

    def user_for(socket_id: str) -> str:
        return assigned.setdefault(socket_id, next(users))

    async with run_node(pusher_config()) as node, auth_backend(node, user_for) as backend, \
            pusher_js(node, backend) as ann, pusher_js(node, backend) as bob:
        await ann.expect("connected")
        await bob.expect("connected")
        first = await subscribed(ann, "presence-room")
        assert first["ids"] == ["ann"] and first["me"] == "ann"
        second = await subscribed(bob, "presence-room")
        assert second["ids"] == ["ann", "bob"] and second["count"] == 2
        added = await ann.expect("member_added")
        assert added["id"] == "bob" and added["info"] == {"name": "n-bob"}
        lib = server_lib(node)
        users_now = await call(lib.users_info, "presence-room")
        assert sorted(u["id"] for u in users_now["users"]) == ["ann", "bob"]
        info = await call(lib.channel_info, "presence-room", ["user_count"])
        assert info["occupied"] and info["user_count"] == 2
        await bob.call("unsubscribe", channel="presence-room")
        removed = await ann.expect("member_removed")
        assert removed["id"] == "bob"
        assert not bob.pending("member_added")  # never told of its own arrival


async def test_client_events_reach_the_others_never_the_sender_and_carry_user_id():
    names = iter(["ann", "bob"])
    assigned: dict[str, str] = {}
    async with run_node(pusher_config()) as node, \
            auth_backend(node, lambda s: assigned.setdefault(s, next(names))) as backend, \
            pusher_js(node, backend) as ann, pusher_js(node, backend) as bob:
        for js in (ann, bob):
            await js.expect("connected")
            await subscribed(js, "presence-chat")
        await ann.expect("member_added")
        await bob.call("bind", channel="presence-chat", name="client-typing")
        reply = await ann.call("trigger", channel="presence-chat", event="client-typing",
                               data={"on": True})
        assert reply["sent"] is True
        got = await bob.expect("bound")
        assert got["data"] == {"on": True} and got["user_id"] == "ann"
        # The sender's own copy would arrive before this trigger's event, if at all.
        await call(server_lib(node).trigger, "presence-chat", "marker", "m")
        await ann.expect("message", lambda e: e["name"] == "marker")
        assert not ann.pending("message")


async def test_client_events_are_refused_with_4301_where_the_app_disallows_them():
    async with run_node(pusher_config(enable_client_messages=False)) as node, \
            auth_backend(node) as backend, pusher_js(node, backend) as js:
        await js.expect("connected")
        await subscribed(js, "private-chat")
        await js.call("trigger", channel="private-chat", event="client-x", data={})
        error = await js.expect("error", lambda e: e["code"] == 4301)
        assert "client messaging" in error["message"]


async def test_laravel_echo_listens_on_private_and_joins_presence():
    async with run_node(pusher_config()) as node, auth_backend(node) as backend, \
            pusher_js(node, backend, echo=True) as echo:
        await echo.expect("connected")
        await echo.call("echo", kind="private", name="orders", event=".OrderShipped")
        await echo.call("echo", kind="join", name="lobby", event=".Said")
        here = await echo.expect("here")
        assert len(here["users"]) == 1
        await echo.expect("echo_subscribed", lambda e: e["name"] == "orders")
        lib = server_lib(node)
        await call(lib.trigger, "private-orders", "OrderShipped", {"order": 5})
        shipped = await echo.expect("echo", lambda e: e["name"] == "orders")
        assert shipped["data"] == {"order": 5}
        await call(lib.trigger, "presence-lobby", "Said", {"text": "hi"})
        said = await echo.expect("echo", lambda e: e["name"] == "lobby")
        assert said["data"] == {"text": "hi"}


async def test_encrypted_channel_payloads_are_relayed_and_decrypted_by_pusher_js():
    async with run_node(pusher_config()) as node, auth_backend(node) as backend, \
            pusher_js(node, backend) as js:
        await js.expect("connected")
        await subscribed(js, "private-encrypted-vault")
        await call(server_lib(node).trigger, "private-encrypted-vault", "secret",
                   {"pin": 1234})
        got = await js.expect("message", on("private-encrypted-vault"))
        assert got["data"] == {"pin": 1234}


async def test_apps_are_isolated_and_centrifugo_clients_reach_them_only_through_a_namespace():
    async with run_node(pusher_config()) as node, auth_backend(node) as backend, \
            pusher_js(node, backend) as mine, pusher_js(node, key=OTHER_KEY) as other:
        await mine.expect("connected")
        await other.expect("connected")
        await subscribed(mine, "news")
        await subscribed(other, "news")
        await call(server_lib(node).trigger, "news", "only-mine", "x")
        assert (await mine.expect("message"))["name"] == "only-mine"
        await call(server_lib(node).trigger, "news", "again", "y")
        await mine.expect("message", lambda e: e["name"] == "again")
        assert not other.pending("message")
        # A Centrifugo-protocol client: no namespace "pusher", no way in (102).
        async with sdk_client(node) as client:
            _, events = await client.subscribe(f"pusher:{APP_ID}:news", wait=False)
            refused = await next_event(events.unsubscribed)
            assert refused.code == 102
    config = base_config(pusher=pusher_config()["pusher"], channel={"namespaces": [
        {"name": "pusher", "allow_subscribe_for_client": True}]})
    async with run_node(config) as node, sdk_client(node) as client:
        _, events = await client.subscribe(f"pusher:{APP_ID}:news")
        await call(server_lib(node).trigger, "news", "seen", "by-centrifugo")
        pub = await next_event(events.publications)
        assert pub.data == "by-centrifugo" and pub.tags["pusher_event"] == "seen"


async def test_http_api_refuses_bad_signatures_and_stale_timestamps():
    async with run_node(pusher_config()) as node:
        with pytest.raises(pusher.errors.PusherBadAuth):
            await call(server_lib(node, secret="wrong").trigger, "news", "e", "d")
        with pytest.raises(pusher.errors.PusherBadAuth):
            await call(server_lib(node, key="wrong").trigger, "news", "e", "d")
        url = f"http://127.0.0.1:{node.port}/apps/{APP_ID}/events"
        body = orjson.dumps({"name": "e", "channel": "news", "data": "d"})
        async with node.session.post(url, data=body, params={
                "auth_key": KEY, "auth_timestamp": "1000", "auth_version": "1.0",
                "body_md5": "x", "auth_signature": "y"}) as response:
            assert response.status == 401
            assert "Timestamp" in await response.text()
        channels = await call(server_lib(node).channels_info, "presence-", ["user_count"])
        assert channels == {"channels": {}}


def signed_query(path: str, body: bytes, stamp: int) -> dict[str, str]:
    """A server API query signed as the Pusher docs describe, at time ``stamp``."""
    query = {"auth_key": KEY, "auth_timestamp": str(stamp), "auth_version": "1.0",
             "body_md5": hashlib.md5(body).hexdigest()}
    text = "POST\n" + path + "\n" + "&".join(f"{k}={query[k]}" for k in sorted(query))
    query["auth_signature"] = hmac.new(SECRET.encode(), text.encode(),
                                       hashlib.sha256).hexdigest()
    return query


async def test_timestamp_window_bounds_how_old_a_signed_request_may_be():
    config = pusher_config()
    config["pusher"]["timestamp_window"] = "10s"
    path = f"/apps/{APP_ID}/events"
    body = orjson.dumps({"name": "e", "channel": "news", "data": "d"})
    async with run_node(config) as node:
        url = f"http://127.0.0.1:{node.port}{path}"
        for age, status in ((30, 401), (5, 200)):
            query = signed_query(path, body, int(time.time()) - age)
            async with node.session.post(url, data=body, params=query) as response:
                assert response.status == status, await response.text()


async def test_connection_established_names_the_socket_and_the_activity_timeout():
    config = pusher_config()
    config["pusher"]["activity_timeout"] = "42s"
    async with run_node(config) as node, ClientSession() as session, session.ws_connect(
            f"ws://127.0.0.1:{node.port}/app/{KEY}?protocol=7") as ws:
        hello = json.loads((await ws.receive()).data)
        assert hello["event"] == "pusher:connection_established"
        data = json.loads(hello["data"])
        assert data["activity_timeout"] == 42
        assert re.match(r"^\d+\.\d+$", data["socket_id"])


@pytest.mark.parametrize("detach", [True, False], ids=["detached", "aiohttp-reader"])
async def test_a_pusher_socket_works_and_drains_on_both_websocket_readers(detach: bool) -> None:
    """``/app/{key}`` on the detached reader (the default) and on aiohttp's: events in
    and out, a client ping answered, and the node's shutdown closes with 4200 (reconnect)."""
    config = pusher_config()
    config["websocket"] = {"detach": detach}
    async with ClientSession() as session:
        async with run_node(config) as node:
            ws = await session.ws_connect(f"ws://127.0.0.1:{node.port}/app/{KEY}?protocol=7")
            hello = json.loads((await ws.receive()).data)
            assert hello["event"] == "pusher:connection_established"
            protocol = type(next(iter(node.node.connections.values())).link).__name__
            assert protocol == ("PusherDirectWebSocket" if detach else "PusherLink")
            await ws.send_str(json.dumps({"event": "pusher:subscribe",
                                          "data": {"channel": "news"}}))
            subscribed = json.loads((await ws.receive()).data)
            assert subscribed["event"] == "pusher_internal:subscription_succeeded"
            await call(server_lib(node).trigger, "news", "created", {"id": 7})
            message = json.loads((await ws.receive(timeout=5)).data)
            assert (message["channel"], message["event"]) == ("news", "created")
            await ws.send_str(json.dumps({"event": "pusher:ping", "data": {}}))
            assert json.loads((await ws.receive()).data)["event"] == "pusher:pong"
            closing = asyncio.create_task(ws.receive(timeout=15))
        # run_node's cleanup drained the node
        message = await closing
        assert message.type is WSMsgType.CLOSE and message.data == 4200, message
        await ws.close()
