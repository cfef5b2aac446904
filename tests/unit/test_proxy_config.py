"""Proxy configuration in Centrifugo v6's layout: it loads, and what is wrong is refused
by key path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.config import ConfigError, config_from_mapping, load_config

V6 = {  # the proxy parts of a Centrifugo v6 config, as its docs write them
    "client": {"token": {"hmac_secret_key": "k" * 32},
               "proxy": {"connect": {"enabled": True, "endpoint": "http://app:3000/connect",
                                     "timeout": "1s", "http_headers": ["Cookie"]},
                         "refresh": {"enabled": True, "endpoint": "http://app:3000/refresh"}}},
    "channel": {"proxy": {"subscribe": {"endpoint": "http://app:3000/subscribe"},
                          "publish": {"endpoint": "http://app:3000/publish"},
                          "sub_refresh": {"endpoint": "http://app:3000/sub_refresh"}},
                "without_namespace": {"subscribe_proxy_enabled": True},
                "namespaces": [{"name": "chat", "publish_proxy_enabled": True,
                                "publish_proxy_name": "chat_backend",
                                "sub_refresh_proxy_enabled": True}]},
    "proxies": [{"name": "chat_backend", "endpoint": "https://chat:8000/publish",
                 "timeout": "500ms", "emulated_headers": ["Authorization"],
                 "include_connection_meta": True, "binary_encoding": False,
                 "http": {"static_headers": {"X-Source": "centrifugo"},
                          "status_to_code_transforms": [
                              {"status_code": 404, "to_error": {"code": 404,
                                                                "message": "not found"}},
                              {"status_code": 403, "to_disconnect": {"code": 4503,
                                                                     "reason": "forbidden"}}]}}],
    "rpc": {"proxy": {"endpoint": "http://app:3000/rpc"},
            "without_namespace": {"proxy_enabled": True},
            "namespaces": [{"name": "admin", "proxy_enabled": True,
                            "proxy_name": "chat_backend"}],
            "ping": {"enabled": True, "method": "ping"}},
}


def with_(**extra: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(V6))
    for path, value in extra.items():
        node = data
        *parents, last = path.split("__")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[last] = value
    return data


def test_a_centrifugo_v6_proxy_config_loads() -> None:
    config = config_from_mapping(V6)
    [named] = config.proxies
    assert named.name == "chat_backend" and named.timeout == 0.5
    assert dict(named.http.static_headers) == {"X-Source": "centrifugo"}
    assert [t.status_code for t in named.http.status_to_code_transforms] == [404, 403]
    assert config.client.proxy.connect.http_headers == ("Cookie",)
    chat = config.channel_options("chat:x")
    assert chat is not None and chat.publish_proxy_name == "chat_backend"
    assert config.rpc.options("admin:x").proxy_name == "chat_backend"  # type: ignore[union-attr]
    assert config.rpc.options("x") is config.rpc.without_namespace
    assert config.rpc.options("nope:x") is None


def test_proxies_and_static_headers_from_the_environment() -> None:
    env = {"CENTRIFUGO_PROXIES": json.dumps([{"name": "p1", "endpoint": "http://x/"}]),
           "CHORUS_CLIENT_PROXY_CONNECT_HTTP_STATIC_HEADERS": '{"X-Key": "v"}',
           "CHORUS_CLIENT_PROXY_CONNECT_ENABLED": "true",
           "CHORUS_CLIENT_PROXY_CONNECT_ENDPOINT": "http://x/c",
           "CHORUS_CLIENT_PROXY_CONNECT_MAX_IN_FLIGHT": "8"}
    config = load_config(env=env)
    assert [p.name for p in config.proxies] == ["p1"]
    assert dict(config.client.proxy.connect.http.static_headers) == {"X-Key": "v"}
    assert config.client.proxy.connect.max_in_flight == 8


def test_no_token_key_is_needed_when_the_connect_proxy_authenticates() -> None:
    config = config_from_mapping({"client": {"proxy": {"connect": {"enabled": True}}}})
    assert not config.client.token.has_key


@pytest.mark.parametrize(("extra", "message"), [
    ({"proxies__0__name": "default"}, "proxies[0].name: 'default' is reserved"),
    ({"proxies__0__name": "x"}, "proxies[0].name: must match"),
    ({"proxies": [{"name": "aa", "endpoint": "http://x/"}, {"name": "aa",
                                                           "endpoint": "http://y/"}]},
     "proxies[1].name: duplicate proxy name 'aa'"),
    ({"proxies__0__endpoint": ""}, "proxies[0].endpoint: required"),
    ({"proxies__0__endpoint": "grpc://app:1000"},
     "proxies[0].endpoint: only http:// and https:// proxies are supported"),
    ({"channel__namespaces__0__publish_proxy_name": "missing"},
     "channel.namespaces[0].publish_proxy_name: no proxy named 'missing'"),
    ({"rpc__namespaces__0__proxy_name": "missing"},
     "rpc.namespaces[0].proxy_name: no proxy named 'missing'"),
    ({"proxies__0__http__status_to_code_transforms": [{"status_code": 404}]},
     "proxies[0].http.status_to_code_transforms[0].to_error: set exactly one of"),
    ({"proxies__0__http__static_headers": {"X": 1}},
     "proxies[0].http.static_headers: expected a mapping of strings to strings"),
    ({"proxies__0__timeout": "0s"}, "proxies[0].timeout: expected a duration"),
    ({"proxies__0__grpc_metadata": ["x"]}, "proxies[0].grpc_metadata: unknown key"),
    ({"rpc__ping__method": ""}, "rpc.ping.method: required when rpc.ping.enabled"),
])
def test_mistakes_are_refused_by_key(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config_from_mapping(with_(**extra))
    assert str(refused.value).startswith(message)
