"""In-process hooks (``@chorus.on_connect`` ...) with the proxies' semantics, driven by the
official Python SDK; and the one-backend-per-event rule refused at start."""

from __future__ import annotations

import time
from typing import Any

import pytest
from centrifuge import ReplyError

from broker import Chorus, ConfigError
from broker.config import config_from_mapping
from broker.proxy import (
    ConnectRequest,
    ConnectResult,
    ProxyDisconnect,
    ProxyError,
    PublishRequest,
    PublishResult,
    RefreshRequest,
    RefreshResult,
    SubscribeRequest,
)
from tests.functional.conftest import (
    WAIT,
    base_config,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)


def hook_config(**extra: Any) -> dict[str, Any]:
    """Every event enabled without an endpoint: the hooks answer."""
    return base_config(
        client={"proxy": {"connect": {"enabled": True, "emulated_headers": ["x-tenant"]},
                          "refresh": {"enabled": True}}},
        channel={"namespaces": [{"name": "app", "subscribe_proxy_enabled": True,
                                 "publish_proxy_enabled": True}]}, **extra)


def install(chorus: Chorus, seen: list[Any]) -> None:
    @chorus.on_connect
    async def connect(request: ConnectRequest) -> Any:
        seen.append(request)
        if request.name == "banned":
            raise ProxyDisconnect(4501, "banned")
        return ConnectResult(user="hooked", info={"via": "hook"}, data={"hi": 1},
                             expire_at=int(time.time()) + 1)

    @chorus.on_refresh
    def refresh(request: RefreshRequest) -> RefreshResult:  # a plain function works too
        seen.append(request)
        return RefreshResult(expire_at=int(time.time()) + 3600)

    @chorus.on_subscribe
    async def subscribe(request: SubscribeRequest) -> Any:
        seen.append(request)
        if request.channel == "app:closed":
            return ProxyError(403, "closed")
        return {"result": {"data": {"joined": request.channel}}}  # the proxy's JSON shape

    @chorus.on_publish
    async def publish(request: PublishRequest) -> PublishResult | None:
        seen.append(request)
        if request.data == b'"raise"':
            raise RuntimeError("a bug in the application")
        return PublishResult(data={"wrapped": request.data.decode() if request.data else ""})


async def test_hooks_answer_like_the_proxies() -> None:
    seen: list[Any] = []
    async with run_node(hook_config(), lambda chorus: install(chorus, seen)) as node, \
            sdk_client(node, token="") as client:
        connected = await next_event(client.events.connected)
        assert connected.data == {"hi": 1}
        session = node.node.connections[client.client_id].session
        assert (session.user, session.info) == ("hooked", b'{"via":"hook"}')
        assert isinstance(seen[0], ConnectRequest) and seen[0].transport == "websocket"
        await wait_until(lambda: (session.expire_at or 0) > time.time() + 3000,
                         "renewed by on_refresh", timeout=WAIT)
        assert any(isinstance(r, RefreshRequest) and r.user == "hooked" for r in seen)
        _, closed = await client.subscribe("app:closed", wait=False)
        assert (await next_event(closed.unsubscribed)).code == 403
        _, events = await client.subscribe("app:open", wait=False)
        assert (await next_event(events.subscribed)).data == {"joined": "app:open"}
        await client.client.publish("app:open", "text")
        assert (await next_event(events.publications)).data == {"wrapped": '"text"'}
        with pytest.raises(ReplyError) as failed:  # the hook raised: 100, logged
            await client.client.publish("app:open", "raise")
        assert failed.value.code == 100
        assert node.node.proxies.metrics.errors[("hook/publish", "publish", "hook")] == 1


async def test_hook_disconnect_and_emulated_headers() -> None:
    seen: list[Any] = []
    async with run_node(hook_config(), lambda chorus: install(chorus, seen)) as node, \
            sdk_client(node, token="", name="banned", connect=False) as client:
        await client.client.connect()
        assert (await next_event(client.events.disconnected)).code == 4501
        assert seen[0].headers == {}  # no emulated headers from the Python SDK


@pytest.mark.parametrize(("extra", "hook", "message"), [
    ({"client": {"proxy": {"connect": {"enabled": True, "endpoint": "http://127.0.0.1:1/"}}}},
     "on_connect", "client.proxy.connect.endpoint: set, and @chorus.on_connect"),
    ({}, "on_connect", "client.proxy.connect.enabled: false, but @chorus.on_connect"),
    ({"client": {"proxy": {"connect": {"enabled": True}}}}, None,
     "client.proxy.connect.endpoint: required when client.proxy.connect.enabled"),
    ({"channel": {"without_namespace": {"subscribe_proxy_enabled": True}}}, None,
     "channel.proxy.subscribe.endpoint: required by channel.without_namespace"),
    ({"channel": {"proxy": {"publish": {"endpoint": "http://127.0.0.1:1/"}},
                  "without_namespace": {"publish_proxy_enabled": True}}}, "on_publish",
     "channel.proxy.publish.endpoint: an HTTP proxy, and @chorus.on_publish"),
    ({}, "on_subscribe", "@chorus.on_subscribe is registered but no namespace sets"),
    ({"rpc": {"without_namespace": {"proxy_enabled": True}}}, None,
     "rpc.proxy.endpoint: required by rpc.without_namespace.proxy_enabled"),
])
async def test_one_backend_per_event_is_checked_at_start(extra: dict[str, Any],
                                                         hook: str | None,
                                                         message: str) -> None:
    config = config_from_mapping(base_config(**extra))

    def setup(chorus: Chorus) -> None:
        if hook is not None:
            getattr(chorus, hook)(lambda request: None)

    with pytest.raises(ConfigError) as refused:
        async with run_node(config, setup):
            pass
    assert str(refused.value).startswith(message)
