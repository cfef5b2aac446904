"""Centrifugo 6.x keys Chorus honours (publication formats, delta publish, channel
compaction, stale close delay, anonymous connection tokens) and the ones it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from broker.config import Config, ConfigError, config_from_mapping
from broker.config.parse import deep_merge

BASE: dict[str, Any] = {
    "client": {"token": {"hmac_secret_key": "k" * 32}},
    "http_api": {"key": "api-key"},
}


def cfg(extra: dict[str, Any]) -> Config:
    return config_from_mapping(deep_merge(BASE, extra))


def error_of(extra: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        cfg(extra)
    return str(info.value)


def test_new_namespace_options_default_to_centrifugo_behaviour() -> None:
    options = cfg({}).channel.without_namespace
    assert options.delta_publish is False and options.allow_channel_compaction is False
    assert options.publication_data_format == "" and options.subscription_type == "stream"
    c = cfg({})
    assert c.client.stale_close_delay == 10.0
    assert c.client.disallow_anonymous_connection_tokens is False


def test_publication_data_format_falls_back_to_the_channel_section() -> None:
    c = cfg({"channel": {
        "publication_data_format": "json",
        "without_namespace": {"delta_publish": True},
        "namespaces": [{"name": "raw", "publication_data_format": "binary"},
                       {"name": "plain", "allow_channel_compaction": True}]}})
    assert c.channel.without_namespace.publication_data_format == "json"
    assert c.channel.without_namespace.delta_publish
    raw, plain = c.channel_options("raw:x"), c.channel_options("plain:x")
    assert raw is not None and raw.publication_data_format == "binary"
    assert plain is not None and plain.publication_data_format == "json"
    assert plain.allow_channel_compaction


@pytest.mark.parametrize(("extra", "message"), [
    ({"channel": {"publication_data_format": "xml"}},
     'channel.publication_data_format: expected one of "", "json", "json_object", "binary", '
     'got "xml"'),
    ({"channel": {"namespaces": [{"name": "m", "subscription_type": "map"}]}},
     'channel.namespaces[0].subscription_type: expected one of "", "stream", got "map"'),
    # Centrifugo features Chorus lacks stay unknown keys, named.
    ({"channel": {"without_namespace": {"subscribe_stream_proxy_enabled": True}}},
     "channel.without_namespace.subscribe_stream_proxy_enabled: unknown key"),
    ({"channel": {"without_namespace": {"keep_latest_publication": True}}},
     "channel.without_namespace.keep_latest_publication: unknown key"),
    ({"client": {"concurrency": 4}}, "client.concurrency: unknown key"),
])
def test_bad_or_unsupported_keys_are_refused_by_name(extra: dict[str, Any], message: str
                                                     ) -> None:
    assert error_of(extra).startswith(message)
