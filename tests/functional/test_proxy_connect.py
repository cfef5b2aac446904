"""The connect and refresh proxies, with the official Python SDK and a real HTTP backend:
connect without a JWT, what the backend's answers do to the SDK, the request Chorus
sends (fields, headers), server-side channels, and the server-side refresh."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.functional.conftest import (
    WAIT,
    base_config,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)
from tests.functional.proxy_backend import Backend, backend


def proxied(b: Backend, **extra: Any) -> dict[str, Any]:
    connect = {"enabled": True, "endpoint": b.url("connect"), **extra}
    return base_config(client={"proxy": {"connect": connect}},
                       channel={"namespaces": [{"name": "news"}]})


async def test_sdk_connects_without_a_token_through_the_connect_proxy(protobuf: bool) -> None:
    async with backend() as b:
        b.answers["connect"] = {"result": {
            "user": "56", "info": {"name": "Ann"}, "data": {"greeting": "hi"},
            "channels": ["news:today"]}}
        async with run_node(proxied(b)) as node, \
                sdk_client(node, token="", protobuf=protobuf, name="py-app", version="1.2",
                           data=b'{"hello":"backend"}' if protobuf else {"hello": "backend"}
                           ) as client:
            connected = await next_event(client.events.connected)
            assert client.value(connected.data) == {"greeting": "hi"}
            session = node.node.connections[client.client_id].session
            assert (session.user, session.info) == ("56", b'{"name":"Ann"}')
            subscribed = await next_event(client.events.subscribed)
            assert subscribed.channel == "news:today"
            [call] = b.calls["connect"]
            assert call.body == {
                "client": client.client_id, "transport": "websocket",
                "protocol": "protobuf" if protobuf else "json", "encoding": "json",
                "data": {"hello": "backend"}, "name": "py-app", "version": "1.2"}
            assert call.headers["content-type"] == "application/json"


async def test_a_token_still_goes_the_jwt_way() -> None:
    async with backend() as b, run_node(proxied(b)) as node, sdk_client(node) as client:
        assert node.node.connections[client.client_id].session.user == "alice"
        assert "connect" not in b.calls


@pytest.mark.parametrize(("answer", "code"), [
    ({"disconnect": {"code": 4501, "reason": "banned"}}, 4501),
    ({"error": {"code": 1000, "message": "who are you"}}, 1000),
    ({}, 3501),  # no result and anonymous connects not allowed: no credentials
])
async def test_backend_refusals_reach_the_sdk_with_their_codes(answer: dict[str, Any],
                                                               code: int) -> None:
    async with backend() as b:
        b.answers["connect"] = answer
        async with run_node(proxied(b)) as node, \
                sdk_client(node, token="", connect=False) as client:
            await client.client.connect()
            disconnected = await next_event(client.events.disconnected)
            assert disconnected.code == code
            assert not node.node.connections or client.client_id not in node.node.connections


async def test_no_result_connects_anonymously_where_allowed() -> None:
    async with backend() as b:
        config = proxied(b)
        config["client"]["allow_anonymous_connect_without_token"] = True
        async with run_node(config) as node, sdk_client(node, token="") as client:
            assert node.node.connections[client.client_id].session.user == ""


async def test_failure_is_error_100_and_the_sdk_retries() -> None:
    async with backend() as b:
        b.answers["connect"] = 503
        async with run_node(proxied(b)) as node, \
                sdk_client(node, token="", connect=False) as client:
            await client.client.connect()
            error = await next_event(client.events.errors)
            assert error.error.code == 100 and error.error.temporary
            await wait_until(lambda: len(b.calls["connect"]) >= 2)  # it reconnected
            b.answers["connect"] = {"result": {"user": "late"}}
            await client.client.ready(timeout=WAIT)
            assert node.node.connections[client.client_id].session.user == "late"


async def test_status_to_code_transforms_answer_like_the_backend() -> None:
    async with backend() as b:
        b.answers["connect"] = 403
        transforms = [{"status_code": 403, "to_disconnect": {"code": 4503, "reason": "nope"}}]
        async with run_node(proxied(b, http={"status_to_code_transforms": transforms})
                            ) as node, sdk_client(node, token="", connect=False) as client:
            await client.client.connect()
            assert (await next_event(client.events.disconnected)).code == 4503


async def test_headers_static_and_from_the_upgrade_request() -> None:
    async with backend() as b:
        b.answers["connect"] = {"result": {"user": "u"}}
        config = proxied(b, http_headers=["Cookie", "X-Real-Ip"],
                         http={"static_headers": {"X-Static": "s", "Cookie": "static"}})
        async with run_node(config) as node, \
                sdk_client(node, token="", headers={"Cookie": "session=abc",
                                                    "X-Other": "not forwarded"}):
            [call] = b.calls["connect"]
            assert call.headers["cookie"] == "session=abc"  # the client's wins over static
            assert call.headers["x-static"] == "s"
            assert "x-other" not in call.headers and "x-real-ip" not in call.headers


async def test_unknown_channel_in_the_result_is_102() -> None:
    async with backend() as b:
        b.answers["connect"] = {"result": {"user": "u", "channels": ["nowhere:x"]}}
        async with run_node(proxied(b)) as node, \
                sdk_client(node, token="", connect=False) as client:
            await client.client.connect()
            assert (await next_event(client.events.disconnected)).code == 102


async def test_refresh_proxy_renews_the_connection_then_expires_it() -> None:
    async with backend() as b:
        b.answers["connect"] = {"result": {"user": "56", "expire_at": int(time.time()) + 1}}
        renewals = 0

        async def refresh(body: dict[str, Any]) -> dict[str, Any]:
            nonlocal renewals
            renewals += 1
            if renewals == 1:
                return {"result": {"expire_at": int(time.time()) + 1, "info": {"n": 1}}}
            return {"result": {"expired": True}}

        b.answers["refresh"] = refresh
        config = proxied(b)
        config["client"]["proxy"]["refresh"] = {"enabled": True, "endpoint": b.url("refresh")}
        async with run_node(config) as node, sdk_client(node, token="") as client:
            session = node.node.connections[client.client_id].session
            assert session.server_refresh
            await wait_until(lambda: session.info == b'{"n":1}', timeout=WAIT)
            assert (await next_event(client.events.connecting)).code == 0  # connect()
            reconnecting = await next_event(client.events.connecting)  # 3005: it reconnects
            assert reconnecting.code == 3005
            [first, *_] = b.calls["refresh"]
            assert first.body["user"] == "56" and first.body["client"]


async def test_a_failed_refresh_gives_the_connection_a_minute() -> None:
    async with backend() as b:
        b.answers["connect"] = {"result": {"user": "56", "expire_at": int(time.time()) + 1}}
        b.answers["refresh"] = 500
        config = proxied(b)
        config["client"]["proxy"]["refresh"] = {"enabled": True, "endpoint": b.url("refresh")}
        async with run_node(config) as node, sdk_client(node, token="") as client:
            session = node.node.connections[client.client_id].session
            await wait_until(lambda: "refresh" in b.calls, timeout=WAIT)
            await wait_until(lambda: (session.expire_at or 0) > time.time() + 50)
            await asyncio.sleep(0.2)
            assert client.client_id in node.node.connections


async def test_commands_sent_behind_a_proxied_connect_run_after_it_in_order() -> None:
    """centrifuge-js writes its subscribes in the same frame as connect: they wait for the
    proxy's answer, then run in order (a raw socket, so the frame is exactly that)."""
    async with backend() as b:
        async def slow(body: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(0.2)
            return {"result": {"user": "u"}}
        b.answers["connect"] = slow
        async with run_node(proxied(b)) as node, \
                node.session.ws_connect(node.ws_url, protocols=["centrifuge-json"]) as ws:
            await ws.send_str('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"a"}}\n'
                              '{"id":3,"rpc":{"method":"x"}}')
            replies = []
            while len(replies) < 3:
                message = await asyncio.wait_for(ws.receive(), WAIT)
                replies += [json.loads(line) for line in message.data.splitlines()]
            assert [r["id"] for r in replies] == [1, 2, 3]
            assert replies[0]["connect"]["client"] and replies[1]["subscribe"] == {}
            assert replies[2]["error"]["code"] == 104  # no RPC here: answered, in turn
