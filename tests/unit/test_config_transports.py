"""The transport sections of the config (Centrifugo v6 names): defaults, a Centrifugo
file's keys, the environment, and the loud refusals."""

from __future__ import annotations

from typing import Any

import pytest

from broker.config import Config, ConfigError, config_from_mapping, load_config
from broker.config.parse import deep_merge
from broker.transport.routes import endpoints

BASE: dict[str, Any] = {
    "client": {"token": {"hmac_secret_key": "k" * 32}},
    "http_api": {"key": "api-key"},
}


def cfg(extra: dict[str, Any] | None = None) -> Config:
    return config_from_mapping(deep_merge(BASE, extra or {}))


def test_every_transport_but_websocket_is_off_by_default() -> None:
    config = cfg()
    for section in (config.http_stream, config.sse, config.uni_websocket, config.uni_sse,
                    config.uni_http_stream):
        assert section.enabled is False
    assert endpoints(config) == ["WebSocket: /connection/websocket"]


def test_a_centrifugo_v6_transport_section_loads_unchanged() -> None:
    config = cfg({
        "http_stream": {"enabled": True, "max_request_body_size": 131072},
        "sse": {"enabled": True, "handler_prefix": "/rt/sse"},
        "emulation": {"handler_prefix": "/rt/emulation", "max_request_body_size": 4096},
        "uni_websocket": {"enabled": True, "join_push_messages": True,
                          "disable_disconnect_push": True, "message_size_limit": 1024},
        "uni_sse": {"enabled": True}, "uni_http_stream": {"enabled": True},
    })
    assert config.http_stream.max_request_body_size == 131072
    assert config.emulation.max_request_body_size == 4096
    assert config.uni_websocket.message_size_limit == 1024
    assert endpoints(config) == [
        "WebSocket: /connection/websocket", "http_stream: /connection/http_stream",
        "sse: /rt/sse", "uni_websocket: /connection/uni_websocket",
        "uni_sse: /connection/uni_sse", "uni_http_stream: /connection/uni_http_stream",
        "emulation: /rt/emulation"]


def test_transports_from_the_environment() -> None:
    config = load_config(env={"CHORUS_SSE_ENABLED": "true",
                              "CHORUS_UNI_HTTP_STREAM_ENABLED": "1",
                              "CHORUS_UNI_WEBSOCKET_JOIN_PUSH_MESSAGES": "true",
                              "CHORUS_EMULATION_MAX_REQUEST_BODY_SIZE": "1000"},
                         overrides=BASE)
    assert config.sse.enabled and config.uni_http_stream.enabled
    assert config.uni_websocket.join_push_messages
    assert config.emulation.max_request_body_size == 1000


@pytest.mark.parametrize(("extra", "message"), [
    ({"uni_websocket": {"compression": True}}, "uni_websocket.compression: not supported"),
    ({"uni_websocket": {"read_buffer_size": 4096}}, "uni_websocket.read_buffer_size: only 0"),
    ({"uni_websocket": {"write_timeout": "5s"}}, "uni_websocket.write_timeout: only 1.0"),
    ({"uni_websocket": {"use_write_buffer_pool": True}},
     "uni_websocket.use_write_buffer_pool: only False"),
    ({"uni_websocket": {"write_buffer_size": 1}}, "uni_websocket.write_buffer_size: only 0"),
    ({"uni_websocket": {"compression_level": 5}}, "uni_websocket.compression_level: only 1"),
    ({"uni_websocket": {"compression_min_size": 9}},
     "uni_websocket.compression_min_size: only 0"),
    ({"uni_websocket": {"decompressed_message_size_limit": 9}},
     "uni_websocket.decompressed_message_size_limit: only 0"),
    ({"uni_websocket": {"disable_closing_handshake": True}},
     "uni_websocket.disable_closing_handshake: only False"),
    ({"sse": {"handler_prefix": "sse"}}, "sse.handler_prefix: must start with '/'"),
    ({"http_stream": {"max_request_body_size": 0}}, "http_stream.max_request_body_size"),
    ({"uni_sse": {"enabled": "sometimes"}}, "uni_sse.enabled"),
    ({"uni_http_stream": {"connect_code_to_http_response": {"enabled": True}}},
     "uni_http_stream.connect_code_to_http_response"),
])
def test_bad_transport_keys_fail_naming_the_key(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(extra)
    assert message in str(info.value)
