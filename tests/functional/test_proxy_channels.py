"""Subscribe, publish, sub_refresh and RPC proxies with the official Python SDK and a real
HTTP backend: refused and allowed subscriptions, rewritten publications, named proxies per
namespace and per RPC namespace, the connection meta, server-side subscription refresh."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from centrifuge import ReplyError
from centrifuge.filter import Filter

from tests.functional.conftest import (
    WAIT,
    base_config,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)
from tests.functional.proxy_backend import Backend, backend


def channel_config(b: Backend) -> dict[str, Any]:
    """Namespace "app": subscribe and publish go to the named proxy "app"; "plain" asks
    nobody; RPC namespace "app" proxies, methods without a namespace do not."""
    return base_config(
        proxies=[{"name": "app", "endpoint": b.url("app"), "include_connection_meta": True}],
        channel={"proxy": {"sub_refresh": {"endpoint": b.url("sub_refresh")}},
                 "namespaces": [
                     {"name": "app", "subscribe_proxy_enabled": True,
                      "subscribe_proxy_name": "app", "publish_proxy_enabled": True,
                      "publish_proxy_name": "app", "force_recovery": True,
                      "history_size": 10, "history_ttl": "60s"},
                     {"name": "plain", "allow_subscribe_for_client": True,
                      "allow_publish_for_subscriber": True}]},
        rpc={"proxy": {"endpoint": b.url("rpc")},
             "namespaces": [{"name": "app", "proxy_enabled": True}]})


def by_channel(answers: dict[str, Any]) -> Any:
    async def answer(body: dict[str, Any]) -> Any:
        return answers.get(body.get("channel", ""), {})
    return answer


async def test_subscribe_proxy_refuses_and_allows(protobuf: bool) -> None:
    async with backend() as b:
        b.answers["app"] = by_channel({
            "app:secret": {"error": {"code": 403, "message": "members only"}},
            "app:open": {"result": {"info": {"role": "guest"}, "data": {"welcome": 1}}}})
        async with run_node(channel_config(b)) as node, \
                sdk_client(node, protobuf=protobuf) as client:
            _, refused = await client.subscribe("app:secret", wait=False)
            unsubscribed = await next_event(refused.unsubscribed)
            assert (unsubscribed.code, unsubscribed.reason) == (403, "members only")
            _, events = await client.subscribe("app:open", wait=False)
            subscribed = await next_event(events.subscribed)
            assert client.value(subscribed.data) == {"welcome": 1}
            assert subscribed.recoverable  # force_recovery of the namespace
            conn_sub = node.node.connections[client.client_id].session.subs["app:open"]
            assert conn_sub.info == b'{"role":"guest"}'
            asked = [c.body for c in b.calls["app"]]
            assert asked[-1] == {"client": client.client_id, "transport": "websocket",
                                 "protocol": "protobuf" if protobuf else "json",
                                 "encoding": "json", "user": "alice", "channel": "app:open"}
            await client.subscribe("plain:x")  # not proxied: the namespace decides
            assert len(b.calls["app"]) == 2


async def test_subscribe_proxy_disconnect_closes_the_connection() -> None:
    async with backend() as b:
        b.answers["app"] = {"disconnect": {"code": 4600, "reason": "go away"}}
        async with run_node(channel_config(b)) as node, sdk_client(node) as client:
            await client.subscribe("app:x", wait=False)
            assert (await next_event(client.events.disconnected)).code == 4600


async def test_subscribe_proxy_failure_is_a_temporary_error_and_the_sdk_retries() -> None:
    async with backend() as b:
        b.answers["app"] = 502
        async with run_node(channel_config(b)) as node, sdk_client(node) as client:
            sub, events = await client.subscribe("app:x", wait=False)
            error = await next_event(events.errors)
            assert error.error.code == 100 and error.error.temporary
            b.answers["app"] = {}
            await sub.ready(timeout=WAIT)


async def test_publish_proxy_rewrites_client_publications(protobuf: bool) -> None:
    async with backend() as b:
        async def publish(body: dict[str, Any]) -> dict[str, Any]:
            if "channel" in body and "data" in body:  # a publish (subscribes have no data)
                if body["data"].get("text") == "spam":
                    return {"error": {"code": 1001, "message": "no spam"}}
                return {"result": {"data": {"text": body["data"]["text"].upper(),
                                            "by": body["user"]}}}
            return {}
        b.answers["app"] = publish
        async with run_node(channel_config(b)) as node, \
                sdk_client(node, protobuf=protobuf) as publisher, \
                sdk_client(node, user="bob", protobuf=protobuf) as reader:
            _, events = await reader.subscribe("app:room")
            await publisher.client.publish("app:room", publisher.payload({"text": "hello"}))
            pub = await next_event(events.publications)
            assert reader.value(pub.data) == {"text": "HELLO", "by": "alice"}
            with pytest.raises(ReplyError) as refused:
                await publisher.client.publish("app:room", publisher.payload({"text": "spam"}))
            assert refused.value.code == 1001
            assert events.publications.empty()
            status, history = await node.api("history", {"channel": "app:room", "limit": 10})
            assert status == 200
            assert [p["data"] for p in history["result"]["publications"]] == [
                {"text": "HELLO", "by": "alice"}]


async def test_rpc_reaches_the_backend_by_namespace(protobuf: bool) -> None:
    async with backend() as b:
        async def rpc(body: dict[str, Any]) -> dict[str, Any]:
            return {"result": {"data": {"method": body["method"], "echo": body["data"]}}}
        b.answers["rpc"] = rpc
        async with run_node(channel_config(b)) as node, \
                sdk_client(node, protobuf=protobuf) as client:
            result = await client.client.rpc("app:sum", client.payload({"a": 1}))
            assert client.value(result.data) == {"method": "app:sum", "echo": {"a": 1}}
            with pytest.raises(ReplyError) as not_available:
                await client.client.rpc("sum", client.payload({}))  # no namespace: no proxy
            assert not_available.value.code == 108
            with pytest.raises(ReplyError) as unknown:
                await client.client.rpc("other:sum", client.payload({}))
            assert unknown.value.code == 104
            assert [c.body["method"] for c in b.calls["rpc"]] == ["app:sum"]


async def test_rpc_ping_is_answered_without_the_backend() -> None:
    async with backend() as b:
        config = channel_config(b)
        config["rpc"]["ping"] = {"enabled": True}
        async with run_node(config) as node, sdk_client(node) as client:
            assert (await client.client.rpc("ping", None)).data is None
            assert "rpc" not in b.calls


async def test_connection_meta_goes_with_every_call_that_includes_it() -> None:
    async with backend() as b:
        b.answers["connect"] = {"result": {"user": "m", "meta": {"tenant": 7}}}
        config = channel_config(b)
        config["client"]["proxy"] = {"connect": {"enabled": True, "endpoint": b.url("connect")}}
        async with run_node(config) as node, sdk_client(node, token="") as client:
            await client.subscribe("app:x")
            assert b.calls["app"][-1].body["meta"] == {"tenant": 7}
            assert node.node.connections[client.client_id].session.meta == b'{"tenant":7}'


async def test_sub_refresh_proxy_renews_subscriptions_server_side() -> None:
    async with backend() as b:
        b.answers["app"] = {"result": {"expire_at": int(time.time()) + 1}}
        b.answers["sub_refresh"] = {"result": {"expire_at": int(time.time()) + 3600,
                                               "info": {"renewed": True}}}
        config = channel_config(b)
        config["channel"]["namespaces"][0]["sub_refresh_proxy_enabled"] = True
        config["client"]["expired_sub_close_delay"] = "0.1s"
        async with run_node(config) as node, sdk_client(node) as client:
            _, events = await client.subscribe("app:x")
            conn_sub = node.node.connections[client.client_id].session.subs["app:x"]
            assert conn_sub.server_refresh
            await wait_until(lambda: conn_sub.info == b'{"renewed":true}', timeout=WAIT)
            assert (conn_sub.expire_at or 0) > time.time() + 3000
            first = b.calls["sub_refresh"][0].body
            assert (first["channel"], first["user"]) == ("app:x", "alice")
            assert events.unsubscribed.empty() and client.events.disconnected.empty()


async def test_binary_encoding_carries_any_bytes_as_base64() -> None:
    raw = b"\x00\x01binary\xff"
    async with backend() as b:
        b.answers["app"] = lambda body: _binary(body)
        config = channel_config(b)
        config["proxies"][0]["binary_encoding"] = True
        config["channel"]["namespaces"][0]["publication_data_format"] = "binary"
        async with run_node(config) as node, sdk_client(node, protobuf=True) as client:
            _, events = await client.subscribe("app:bin")
            await client.client.publish("app:bin", raw)
            assert (await next_event(events.publications)).data == raw[::-1]
            publish = b.calls["app"][-1].body
            assert publish["encoding"] == "binary" and "data" not in publish
            assert base64.b64decode(publish["b64data"]) == raw


async def _binary(body: dict[str, Any]) -> dict[str, Any]:
    if "b64data" not in body:
        return {}
    return {"result": {"b64data": base64.b64encode(
        base64.b64decode(body["b64data"])[::-1]).decode()}}


async def test_rpc_namespace_boundary_and_methods_without_namespace() -> None:
    async with backend() as b:
        b.answers["rpc"] = {"result": {"data": "namespace app"}}
        b.answers["app"] = {"result": {"data": "without namespace"}}
        config = channel_config(b)
        config["rpc"]["namespace_boundary"] = "."
        config["rpc"]["without_namespace"] = {"proxy_enabled": True, "proxy_name": "app"}
        async with run_node(config) as node, sdk_client(node) as client:
            assert (await client.client.rpc("app.sum", None)).data == "namespace app"
            # No "." in it: a method without namespace, to the proxy named "app".
            assert (await client.client.rpc("app:sum", None)).data == "without namespace"
            assert [c.body["method"] for c in b.calls["app"]] == ["app:sum"]


async def test_a_proxied_subscribe_is_still_refused_on_its_own_terms() -> None:
    """Allowed by the backend, but with a tags filter its namespace does not allow: 103,
    and the connection lives on."""
    async with backend() as b, run_node(channel_config(b)) as node, \
            sdk_client(node) as client:
        _, events = await client.subscribe("app:x", wait=False,
                                           tags_filter=Filter.eq("k", "v"))
        assert (await next_event(events.unsubscribed)).code == 103
        await client.subscribe("app:y")
        assert client.client_id in node.node.connections
