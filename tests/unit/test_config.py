"""Configuration: file formats, defaults, env overlay, error messages, cross-field checks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from broker.config import (
    Config,
    ConfigError,
    config_from_mapping,
    dump_starter_config,
    load_config,
    user_limited_users,
)
from broker.config.checks import config_warnings
from broker.config.env import apply_env
from broker.config.parse import deep_merge, parse_duration

BASE: dict[str, Any] = {
    "client": {"token": {"hmac_secret_key": "k" * 32}},
    "http_api": {"key": "api-key"},
}


def cfg(extra: dict[str, Any] | None = None) -> Config:
    return config_from_mapping(deep_merge(BASE, extra or {}))


def error_of(extra: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        cfg(extra)
    return str(info.value)


# --- defaults and formats ----------------------------------------------------------------


def test_defaults_follow_centrifugo_v6() -> None:
    c = cfg()
    assert c.http_server.port == 8000 and c.http_server.address == ""
    assert c.log.level == "info"
    assert c.engine.type == "memory"
    assert c.engine.redis.address == ("redis://127.0.0.1:6379",)
    assert c.client.ping_interval == 25.0 and c.client.pong_timeout == 8.0
    assert c.client.expired_close_delay == 25.0
    assert c.client.channel_limit == 128 and c.client.queue_max_size == 1048576
    assert c.client.history_max_publication_limit == 300
    assert c.client.recovery_max_publication_limit == 300
    assert c.websocket.message_size_limit == 65536 and c.websocket.write_timeout == 1.0
    assert c.channel.max_length == 255 and c.channel.namespace_boundary == ":"
    assert (c.channel.user_boundary, c.channel.user_separator) == ("#", ",")
    assert c.channel.private_prefix == "$"
    assert c.channel.history_meta_ttl == 720 * 3600
    assert c.chorus.shard_count == 16 and c.chorus.shutdown_timeout == 10.0
    assert c.client.connect_rate_limit_per_ip.rate_per_second == 20.0


def test_direct_construction_needs_no_file() -> None:
    c = Config()  # unvalidated, for tests that want one specific shape
    assert c.channel_options("x") == c.channel.without_namespace


def test_config_is_frozen() -> None:
    c = cfg()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.http_server.port = 1  # type: ignore[misc]


def _write_all_formats(tmp_path: Path, data: dict[str, Any]) -> list[Path]:
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps(data))
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(yaml.safe_dump(data))
    toml_file = tmp_path / "c.toml"
    toml_file.write_text(
        '[client.token]\nhmac_secret_key = "' + "k" * 32 + '"\n'
        '[http_api]\nkey = "api-key"\n'
        "[http_server]\nport = 9001\n"
        '[[channel.namespaces]]\nname = "chat"\nhistory_size = 10\nhistory_ttl = "30s"\n'
    )
    return [json_file, yaml_file, toml_file]


def test_json_yaml_and_toml_load_the_same(tmp_path: Path) -> None:
    data = deep_merge(
        BASE,
        {
            "http_server": {"port": 9001},
            "channel": {"namespaces": [{"name": "chat", "history_size": 10, "history_ttl": "30s"}]},
        },
    )
    loaded = [load_config(p, env={}) for p in _write_all_formats(tmp_path, data)]
    assert loaded[0] == loaded[1] == loaded[2]
    assert loaded[0].http_server.port == 9001
    assert loaded[0].channel_options("chat:x").history_ttl == 30.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("{}", "c.ini", "unknown config file type"),
        ("{bad json", "c.json", "cannot parse"),
        ("- a\n- b\n", "c.yaml", "top level must be a mapping"),
        ("a = [", "c.toml", "cannot parse"),
    ],
)
def test_unreadable_files_name_the_file(
    tmp_path: Path, content: str, name: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", env={})


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    c = load_config(path, env={"CHORUS_CLIENT_INSECURE": "true", "CHORUS_HTTP_API_INSECURE": "1"})
    assert c.client.insecure and c.http_server.port == 8000


# --- values and errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("25s", 25.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("100us", 1e-4),
        ("1h1m1s", 3661.0),
    ],
)
def test_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert cfg(
        {"client": {"expired_close_delay": text}}
    ).client.expired_close_delay == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["5x", "-1s", "", "s", "1h-", "inf", "nan", True, [1], -3])
def test_bad_durations_are_rejected_with_their_path(bad: Any) -> None:
    message = error_of({"client": {"ping_interval": bad}})
    assert message.startswith("client.ping_interval: expected a duration")


def test_numbers_are_durations_in_seconds() -> None:
    c = cfg({"client": {"ping_interval": 30, "pong_timeout": 2.5}})
    assert (c.client.ping_interval, c.client.pong_timeout) == (30.0, 2.5)


def test_bad_namespace_value_names_the_full_path() -> None:
    message = error_of(
        {"channel": {"namespaces": [{"name": "ok"}, {"name": "two", "history_size": "abc"}]}}
    )
    assert (
        message == 'channel.namespaces[1].history_size: expected a non-negative integer, got "abc"'
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"client": {"tokn": {}}}, 'client.tokn: unknown key (did you mean "token"?)'),
        ({"nonsense": 1}, "nonsense: unknown key"),
        (
            {"channel": {"namespaces": [{"name": "ab", "presense": True}]}},
            'channel.namespaces[0].presense: unknown key (did you mean "presence"?)',
        ),
        ({"client": {"insecure": "yes"}}, 'client.insecure: expected a boolean, got "yes"'),
        (
            {"http_server": {"port": 70000}},
            "http_server.port: expected an integer between 0 and 65535, got 70000",
        ),
        ({"http_server": {"port": True}}, "http_server.port: expected an integer between"),
        (
            {"engine": {"type": "kafka"}},
            'engine.type: expected one of "memory", "redis", got "kafka"',
        ),
        (
            {"client": {"allowed_origins": [1]}},
            "client.allowed_origins: expected a list of strings",
        ),
        ({"client": 5}, "client: expected a mapping, got 5"),
        ({"channel": {"namespaces": {"name": "x"}}}, "channel.namespaces: expected a list"),
        (
            {"channel": {"namespaces": [{"history_size": 1}]}},
            "channel.namespaces[0].name: expected a string, got null",
        ),
        (
            {"channel": {"without_namespace": {"allowed_delta_types": ["xdelta"]}}},
            'channel.without_namespace.allowed_delta_types: items must be one of "fossil"',
        ),
        (
            {"channel": {"without_namespace": {"force_recovery_mode": "replay"}}},
            "channel.without_namespace.force_recovery_mode: expected one of",
        ),
        (
            {"chorus": {"shard_count": 0}},
            "chorus.shard_count: expected an integer between 1 and 4096",
        ),
        (
            {"client": {"burst_write_delay": "2s"}},
            'client.burst_write_delay: at most 1s, got "2s"',
        ),
    ],
)
def test_bad_keys_and_values_fail_loudly(extra: dict[str, Any], message: str) -> None:
    assert error_of(extra).startswith(message)


def test_list_option_accepts_a_comma_string_like_centrifugo() -> None:
    c = cfg({"client": {"allowed_origins": "https://a.example, https://b.example"}})
    assert c.client.allowed_origins == ("https://a.example", "https://b.example")


def test_empty_recovery_mode_means_stream() -> None:
    c = cfg({"channel": {"without_namespace": {"force_recovery_mode": ""}}})
    assert c.channel.without_namespace.force_recovery_mode == "stream"


# --- cross-field checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"channel": {"without_namespace": {"history_size": 10}}},
            "channel.without_namespace.history_ttl: required when history_size > 0",
        ),
        (
            {"channel": {"namespaces": [{"name": "ab", "history_ttl": "10s"}]}},
            "channel.namespaces[0].history_size: required when history_ttl > 0",
        ),
        (
            {"channel": {"namespaces": [{"name": "ab", "history_size": 1, "history_ttl": "1.5s"}]}},
            "channel.namespaces[0].history_ttl: sub-second precision is not supported",
        ),
        (
            {
                "channel": {
                    "history_meta_ttl": "1h",
                    "namespaces": [{"name": "ab", "history_size": 1, "history_ttl": "2h"}],
                }
            },
            "channel.namespaces[0].history_ttl: must not exceed history_meta_ttl",
        ),
        (
            {"channel": {"namespaces": [{"name": "ab", "history_meta_ttl": "1h"}]}},
            "channel.namespaces[0].history_meta_ttl: a per-namespace value is not supported",
        ),
        (
            {"channel": {"namespaces": [{"name": "ab", "force_recovery": True}]}},
            "channel.namespaces[0].force_recovery: needs history_size and history_ttl",
        ),
        (
            {"channel": {"namespaces": [{"name": "a"}]}},
            'channel.namespaces[0].name: "a" must match',
        ),
        ({"channel": {"namespaces": [{"name": "a b"}]}}, 'channel.namespaces[0].name: "a b" must'),
        (
            {"channel": {"namespaces": [{"name": "ab"}, {"name": "ab"}]}},
            'channel.namespaces[1].name: duplicate namespace "ab"',
        ),
        (
            {"channel": {"without_namespace": {"channel_regex": "(["}}},
            "channel.without_namespace.channel_regex: invalid regular expression",
        ),
        (
            {"channel": {"namespaces": [{"name": "ab"}, {"name": "cd", "channel_regex": "a)"}]}},
            "channel.namespaces[1].channel_regex: invalid regular expression",
        ),
        (
            {"websocket": {"read_buffer_size": 4096}},
            "websocket.read_buffer_size: not supported",
        ),
        ({"websocket": {"write_timeout": "0s"}}, "websocket.write_timeout: must be > 0"),
        ({"websocket": {"compression": True}}, "websocket.compression: not supported"),
        (
            {"engine": {"redis": {"cluster_address": ["h:7000"], "db": 2}}},
            "engine.redis.db: Redis Cluster has only db 0",
        ),
        (
            {"notifications": {"read_from_replica": True}},
            "notifications.read_from_replica: needs engine.type redis with "
            "engine.redis.sentinel_address",
        ),
        ({"channel": {"namespace_boundary": ""}}, "channel.namespace_boundary: must not be empty"),
        (
            {"http_server": {"tls": {"cert_pem_file": "/x.pem"}}},
            "http_server.tls.key_pem_file: required together with the other TLS file",
        ),
        ({"http_server": {"tls": {"enabled": True}}}, "http_server.tls.cert_pem_file: required"),
        (
            {
                "http_server": {
                    "tls": {
                        "enabled": True,
                        "cert_pem_file": "/no/c.pem",
                        "key_pem_file": "/no/k.pem",
                    }
                }
            },
            "http_server.tls.cert_pem_file: file '/no/c.pem' not found",
        ),
        (
            {"engine": {"redis": {"sentinel_address": ["h:26379"]}}},
            "engine.redis.sentinel_master_name: required with sentinel_address",
        ),
        (
            {"engine": {"redis": {"address": ["nohostport"]}}},
            'engine.redis.address[0]: expected "host:port" or a redis:// URL, got "nohostport"',
        ),
        (
            {"client": {"ping_interval": "5s", "pong_timeout": "5s"}},
            "client.pong_timeout: must be less than client.ping_interval",
        ),
        (
            {
                "client": {
                    "subscribe_to_user_personal_channel": {
                        "enabled": True,
                        "personal_channel_namespace": "users",
                    }
                }
            },
            "client.subscribe_to_user_personal_channel.personal_channel_namespace: "
            'namespace "users"',
        ),
        (
            {
                "client": {
                    "subscribe_to_user_personal_channel": {
                        "enabled": True,
                        "single_connection": True,
                    }
                }
            },
            "client.subscribe_to_user_personal_channel.single_connection: needs presence",
        ),
        ({"client": {"subscription_token": {"enabled": True}}}, "client.subscription_token: a key"),
        (
            {"client": {"token": {"rsa_public_key": "not a pem"}}},
            "client.token.rsa_public_key: not a PEM public key or certificate",
        ),
        (
            {"client": {"token": {"jwks_file": "/no/such/jwks.json"}}},
            "client.token.jwks_file: cannot be combined with hmac_secret_key",
        ),
        ({"admin": {"enabled": True}}, "admin.password: required when admin.enabled"),
        (
            {"client": {"command_rate_limit": {"enabled": True, "rate_per_second": 0}}},
            "client.command_rate_limit.rate_per_second: must be > 0 when enabled",
        ),
    ],
)
def test_cross_field_checks_name_the_key(extra: dict[str, Any], message: str) -> None:
    assert error_of(extra).startswith(message)


def test_a_token_key_is_required_unless_insecure_or_anonymous() -> None:
    with pytest.raises(ConfigError, match=r"^client\.token: a key .* is required unless"):
        config_from_mapping({"http_api": {"key": "k"}})
    assert config_from_mapping(
        {"http_api": {"key": "k"}, "client": {"insecure": True}}
    ).client.insecure
    anon = {"http_api": {"key": "k"}, "client": {"allow_anonymous_connect_without_token": True}}
    assert config_from_mapping(anon).client.allow_anonymous_connect_without_token


def test_http_api_key_may_be_left_out_with_a_warning() -> None:
    """As Centrifugo v6: the node starts, and the API refuses every call (the SDKs'
    own test configs set no key)."""
    c = config_from_mapping({"client": {"insecure": True}, "prometheus": {"enabled": False}})
    assert c.http_api.key == ""
    [warning] = config_warnings(c)
    assert warning.startswith("http_api.key: not set, so the server API")
    insecure = {"client": {"insecure": True}, "http_api": {"insecure": True},
                "prometheus": {"enabled": False}}
    assert config_warnings(config_from_mapping(insecure)) == []


def test_prometheus_token_is_its_own_key_and_never_the_admin_secret() -> None:
    c = load_config(env={**env_of(BASE), "CHORUS_PROMETHEUS_TOKEN": "scrape-token"})
    assert c.prometheus.token == "scrape-token" and config_warnings(c) == []
    message = error_of({"admin": {"secret": "same"}, "prometheus": {"token": "same"}})
    assert message.startswith("prometheus.token: must differ from admin.secret")
    assert cfg({"admin": {"secret": "a"}, "prometheus": {"token": "b"}}).prometheus.token == "b"


@pytest.mark.parametrize(("prometheus", "warned"), [
    ({}, True),
    ({"token": "t"}, False),
    ({"insecure": True}, False),
    ({"enabled": False}, False),
])
def test_a_missing_prometheus_token_is_a_warning_naming_the_key(
        prometheus: dict[str, Any], warned: bool) -> None:
    found = config_warnings(cfg({"prometheus": prometheus}))  # loads: never refused
    assert bool(found) is warned
    assert all(w.startswith("prometheus.token: not set") for w in found)


def env_of(mapping: dict[str, Any]) -> dict[str, str]:
    """BASE as environment variables (a file-less load)."""
    return {"CHORUS_CLIENT_TOKEN_HMAC_SECRET_KEY": mapping["client"]["token"]["hmac_secret_key"],
            "CHORUS_HTTP_API_KEY": mapping["http_api"]["key"]}


def test_ecdsa_key_must_be_an_ec_key(tmp_path: Path) -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert (
        cfg({"client": {"token": {"ecdsa_public_key": pem}}}).client.token.ecdsa_public_key == pem
    )
    message = error_of({"client": {"token": {"rsa_public_key": pem}}})
    assert message.startswith("client.token.rsa_public_key: expected an RSA public key")


# --- channels ------------------------------------------------------------------------------


def test_channel_options_by_namespace_and_private_prefix() -> None:
    c = cfg(
        {
            "channel": {
                "without_namespace": {"presence": True},
                "namespaces": [{"name": "chat", "join_leave": True}],
            }
        }
    )
    top = c.channel_options("news")
    chat = c.channel_options("chat:room")
    assert top is not None and top.presence and not top.join_leave
    assert chat is not None and chat.join_leave and not chat.presence
    assert c.channel_options("$chat:secret") is chat
    assert c.channel_options("$plain") is top
    assert c.channel_options("nope:room") is None
    assert c.namespace_of("news") == "" and c.namespace_of("chat:1") == "chat"
    assert c.namespace_of("$chat:1") == "chat" and c.namespace_of("nope:1") == "(unknown)"


def test_custom_boundaries_are_honoured() -> None:
    c = cfg(
        {
            "channel": {
                "namespace_boundary": "/",
                "private_prefix": "!",
                "user_boundary": "@",
                "user_separator": ";",
                "namespaces": [{"name": "chat"}],
            }
        }
    )
    assert c.namespace_of("!chat/x") == "chat"
    assert c.namespace_of("chat:x") == ""
    assert user_limited_users(c, "dm@1;2") == ["1", "2"]


def test_history_meta_ttl_falls_back_to_the_global_value() -> None:
    """The engines keep one meta TTL: a namespace inherits it, may repeat it, and a
    different value is refused (see test_cross_field_checks_name_the_key)."""
    c = cfg(
        {
            "channel": {
                "history_meta_ttl": "48h",
                "namespaces": [{"name": "same", "history_meta_ttl": "48h"}, {"name": "inherit"}],
            }
        }
    )
    assert c.channel_options("same:x").history_meta_ttl == 48 * 3600  # type: ignore[union-attr]
    assert c.channel_options("inherit:x").history_meta_ttl == 48 * 3600  # type: ignore[union-attr]
    assert c.channel.without_namespace.history_meta_ttl == 48 * 3600


def test_user_limited_users() -> None:
    c = cfg()
    assert user_limited_users(c, "dialog#42,43") == ["42", "43"]
    assert user_limited_users(c, "chat:dialog#7") == ["7"]
    assert user_limited_users(c, "dialog#") == []  # nobody, in particular not anonymous ""
    assert user_limited_users(c, "dialog") is None


# --- environment and overrides -----------------------------------------------------------------


def test_env_overrides_file_and_walks_keys_with_underscores() -> None:
    env = {
        "CHORUS_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE": "100",
        "CHORUS_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL": "1m30s",
        "CHORUS_CLIENT_ALLOW_ANONYMOUS_CONNECT_WITHOUT_TOKEN": "true",
        "CHORUS_HTTP_SERVER_PORT": "9100",
        "CHORUS_ENGINE_REDIS_ADDRESS": "a:1, b:2",
        "CHORUS_CLIENT_ALLOWED_ORIGINS": '["https://x.example"]',
        "CHORUS_CONFIG": "/ignored/by/load_config.yaml",
        # the runbooks' variables (chorus admin): not configuration, not refused
        "CHORUS_ADMIN": "http://10.0.0.11:8000", "CHORUS_ADMIN_TOKEN": "s",
        "CHORUS_NODES": "http://a:8000 http://b:8000", "CHORUS_API": "http://lb",
        "CHORUS_API_KEY": "k", "CHORUS_CLUSTER_DIR": ".chorus-cluster",
        "PATH": "/bin",
    }
    c = load_config(None, env=env, overrides=BASE)
    opts = c.channel.without_namespace
    assert (opts.history_size, opts.history_ttl) == (100, 90.0)
    assert c.client.allow_anonymous_connect_without_token
    assert c.http_server.port == 9100
    assert c.engine.redis.address == ("a:1", "b:2")
    assert c.client.allowed_origins == ("https://x.example",)


def test_env_declares_namespaces_and_sets_their_options(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            deep_merge(
                BASE,
                {
                    "channel": {
                        "namespaces": [{"name": "chat", "join_leave": True}, {"name": "my-ns.v2"}]
                    }
                },
            )
        )
    )
    env = {
        "CHORUS_CHANNEL_NAMESPACES": "chat,news extra",
        "CHORUS_CHANNEL_NAMESPACES_CHAT_PRESENCE": "true",
        "CHORUS_CHANNEL_NAMESPACES_NEWS_HISTORY_SIZE": "5",
        "CHORUS_CHANNEL_NAMESPACES_NEWS_HISTORY_TTL": "60",
        "CHORUS_CHANNEL_NAMESPACES_MY_NS_V2_ALLOW_USER_LIMITED_CHANNELS": "1",
    }
    c = load_config(path, env=env)
    assert [ns.name for ns in c.channel.namespaces] == ["chat", "my-ns.v2", "news", "extra"]
    chat = c.channel_options("chat:1")
    assert chat is not None and chat.presence and chat.join_leave  # file options kept
    news = c.channel_options("news:1")
    assert news is not None and (news.history_size, news.history_ttl) == (5, 60.0)
    assert c.channel_options("my-ns.v2:1").allow_user_limited_channels  # type: ignore[union-attr]


def test_env_json_namespace_objects_replace_the_list(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(deep_merge(BASE, {"channel": {"namespaces": [{"name": "old"}]}})))
    env = {"CHORUS_CHANNEL_NAMESPACES": '[{"name": "only", "presence": true}]'}
    c = load_config(path, env=env)
    assert [ns.name for ns in c.channel.namespaces] == ["only"]
    assert c.channel_options("only:x").presence  # type: ignore[union-attr]
    assert c.channel_options("old:x") is None


def test_env_namespace_names_with_underscores_resolve_by_schema() -> None:
    env = {"CHORUS_CHANNEL_NAMESPACES": "a_b ab", "CHORUS_CHANNEL_NAMESPACES_A_B_PRESENCE": "true"}
    c = load_config(None, env=env, overrides=BASE)
    assert c.channel_options("a_b:x").presence  # type: ignore[union-attr]
    assert not c.channel_options("ab:x").presence  # type: ignore[union-attr]


def test_env_namespace_option_can_be_ambiguous() -> None:
    # "XX" + force_push_join_leave and "XX_FORCE_PUSH" + join_leave spell the same name.
    env = {
        "CHORUS_CHANNEL_NAMESPACES": "xx xx_force_push",
        "CHORUS_CHANNEL_NAMESPACES_XX_FORCE_PUSH_JOIN_LEAVE": "true",
    }
    with pytest.raises(ConfigError, match="ambiguous between namespaces xx, xx_force_push"):
        load_config(None, env=env, overrides=BASE)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CHORUS_HTTP_SERVER_PROT": "1"},
            "CHORUS_HTTP_SERVER_PROT: environment variable matches no config key "
            "(did you mean CHORUS_HTTP_SERVER_PORT?)",
        ),
        (
            {"CHORUS_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE": "abc"},
            'channel.without_namespace.history_size: expected a non-negative integer, got "abc" '
            "(from environment variable CHORUS_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE)",
        ),
        ({"CHORUS_CLIENT_INSECURE": "maybe"}, 'client.insecure: expected a boolean, got "maybe"'),
        (
            {"CHORUS_CHANNEL_NAMESPACES_CHAT_PRESENCE": "true"},
            "CHORUS_CHANNEL_NAMESPACES_CHAT_PRESENCE: environment variable matches no namespace",
        ),
        (
            {"CHORUS_CHANNEL_NAMESPACES": "chat", "CHORUS_CHANNEL_NAMESPACES_CHAT_PRESENCE": "2"},
            'channel.namespaces[0].presence: expected a boolean, got "2"',
        ),
        (
            {"CHORUS_CHANNEL_NAMESPACES": '{"name": 1}'},
            "channel.namespaces: expected namespace names or a JSON array",
        ),
    ],
)
def test_bad_env_fails_naming_the_variable_or_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env=env, overrides=BASE)
    assert str(info.value).startswith(message)


def test_overrides_win_over_env_which_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(deep_merge(BASE, {"http_server": {"port": 9000, "address": "f"}})))
    env = {"CHORUS_HTTP_SERVER_PORT": "9100", "CHORUS_HTTP_SERVER_ADDRESS": "e"}
    c = load_config(path, env=env, overrides={"http_server": {"port": 9200}})
    assert (c.http_server.port, c.http_server.address) == (9200, "e")


def test_env_overlay_does_not_mutate_its_input() -> None:
    raw = deep_merge(BASE, {"channel": {"namespaces": [{"name": "chat"}]}})
    snapshot = json.dumps(raw, sort_keys=True)
    env = {"CHORUS_CHANNEL_NAMESPACES_CHAT_PRESENCE": "true", "CHORUS_CHANNEL_NAMESPACES": "x y"}
    out = apply_env(raw, env, Config)
    assert json.dumps(raw, sort_keys=True) == snapshot
    assert out["channel"]["namespaces"][0] == {"name": "chat", "presence": True}


# --- starter config ---------------------------------------------------------------------------


def test_starter_config_loads_cleanly_with_fresh_secrets() -> None:
    first, second = dump_starter_config(), dump_starter_config()
    a = config_from_mapping(yaml.safe_load(first))
    b = config_from_mapping(yaml.safe_load(second))
    assert a.client.token.hmac_secret_key and a.http_api.key and a.admin.secret
    assert a.client.token.hmac_secret_key != b.client.token.hmac_secret_key
    assert a.http_api.key != b.http_api.key and a.admin.secret != b.admin.secret
    assert a.prometheus.token and a.prometheus.token != b.prometheus.token
    assert a.prometheus.token != a.admin.secret and config_warnings(a) == []
    assert first.startswith("#") and "CHORUS_" in first
    assert a.channel_options("chat:lobby").history_size == 100  # type: ignore[union-attr]
