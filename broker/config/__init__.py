"""Chorus configuration: one typed, frozen object, validated loudly at start.

The key layout follows Centrifugo v6 (``http_server.port``, ``client.token.hmac_secret_key``,
``channel.namespaces[].history_size`` ...), so a Centrifugo v6 config for the features
Chorus supports loads unchanged. Chorus-only knobs live in the ``chorus`` section or are
marked "Chorus extension" below.

Sources, lowest priority first: a JSON/YAML/TOML file, ``CHORUS_<PATH>`` or
``CENTRIFUGO_<PATH>`` environment variables (see :mod:`broker.config.env`; CHORUS_ wins
when both set one key), then ``overrides`` (CLI flags). Durations are
stored as float seconds; lists as tuples.

Error handling: :func:`load_config` and :func:`config_from_mapping` raise
:class:`ConfigError` for unknown keys, bad values and failed cross-field checks, with the
full key path at the start of the message. Nothing is silently defaulted or ignored.

Layout: this module holds the whole :class:`Config` and the loaders; its sections live in
submodules by topic (:mod:`~broker.config.server`, :mod:`~broker.config.client`,
:mod:`~broker.config.channel`, :mod:`~broker.config.ops`, :mod:`~broker.config.proxy`,
:mod:`~broker.config.transports`, :mod:`~broker.config.pusher`,
:mod:`~broker.config.consumers`) and are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.config.channel import DATA_FORMATS, ChannelConfig, ChannelNamespace, ChannelOptions
from broker.config.client import (
    ClientConfig,
    PersonalChannelConfig,
    RateLimitConfig,
    SubscriptionTokenConfig,
    TokenConfig,
    WebSocketConfig,
)
from broker.config.consumers import ConsumerConfig
from broker.config.env import apply_env
from broker.config.ops import CacheConfig, JourneysConfig, MonitorConfig, NotificationsConfig
from broker.config.parse import (
    SECTIONS,
    ConfigError,
    build,
    deep_merge,
    opt,
    read_file,
)
from broker.config.proxy import NamedProxyConfig, ProxyConfig, RpcConfig
from broker.config.pusher import PusherConfig
from broker.config.server import (
    AdminConfig,
    ChorusConfig,
    EngineConfig,
    HttpApiConfig,
    HttpServerConfig,
    LogConfig,
    PrometheusConfig,
    RedisConfig,
    TLSConfig,
)
from broker.config.transports import (
    EmulationConfig,
    HttpStreamConfig,
    SseConfig,
    UniHttpStreamConfig,
    UniSseConfig,
    UniWebSocketConfig,
)

__all__ = [
    "DATA_FORMATS",
    "AdminConfig",
    "CacheConfig",
    "ChannelConfig",
    "ChannelNamespace",
    "ChannelOptions",
    "ChorusConfig",
    "ClientConfig",
    "Config",
    "ConfigError",
    "ConsumerConfig",
    "EngineConfig",
    "HttpApiConfig",
    "HttpServerConfig",
    "JourneysConfig",
    "LogConfig",
    "MonitorConfig",
    "NotificationsConfig",
    "PersonalChannelConfig",
    "PrometheusConfig",
    "ProxyConfig",
    "RateLimitConfig",
    "RedisConfig",
    "SubscriptionTokenConfig",
    "TLSConfig",
    "TokenConfig",
    "WebSocketConfig",
    "config_from_mapping",
    "dump_starter_config",
    "load_config",
    "user_limited_users",
]

UNKNOWN_NAMESPACE = "(unknown)"  # metrics label; parentheses cannot occur in a real name


@dataclass(frozen=True)
class Config:
    """The whole configuration. Build it with :func:`load_config` or
    :func:`config_from_mapping`, which validate it; constructing it directly skips the
    cross-field checks (fine for tests that want one specific shape)."""

    http_server: HttpServerConfig = field(default_factory=HttpServerConfig)
    log: LogConfig = field(default_factory=LogConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    websocket: WebSocketConfig = field(default_factory=WebSocketConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    http_api: HttpApiConfig = field(default_factory=HttpApiConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    chorus: ChorusConfig = field(default_factory=ChorusConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    # Chorus extension: connection journey analytics (broker.journal).
    journeys: JourneysConfig = field(default_factory=JourneysConfig)
    # Centrifugo v6 named proxies and RPC namespaces (broker.config.proxy)
    proxies: tuple[NamedProxyConfig, ...] = opt((), kind=SECTIONS, item=NamedProxyConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    # Centrifugo v6 async consumers: the PostgreSQL outbox and Redis Streams (broker.consumers)
    consumers: tuple[ConsumerConfig, ...] = opt((), kind=SECTIONS, item=ConsumerConfig)
    # Transports besides the bidirectional WebSocket (broker.config.transports).
    http_stream: HttpStreamConfig = field(default_factory=HttpStreamConfig)
    sse: SseConfig = field(default_factory=SseConfig)
    emulation: EmulationConfig = field(default_factory=EmulationConfig)
    uni_websocket: UniWebSocketConfig = field(default_factory=UniWebSocketConfig)
    uni_sse: UniSseConfig = field(default_factory=UniSseConfig)
    uni_http_stream: UniHttpStreamConfig = field(default_factory=UniHttpStreamConfig)
    # Chorus extension: the Pusher Channels protocol and HTTP API (broker.pusher).
    pusher: PusherConfig = field(default_factory=PusherConfig)

    def namespace_of(self, channel: str) -> str:
        """The channel's namespace name: "" for none, ``"(unknown)"`` if not configured.

        Safe as a metrics label: unconfigured names collapse into one value, so clients
        cannot inflate label cardinality by inventing namespaces.
        """
        name = self._namespace_name(channel)
        if name == "" or self.channel.namespace_options(name) is not None:
            return name
        return UNKNOWN_NAMESPACE

    def channel_options(self, channel: str) -> ChannelOptions | None:
        """Options for ``channel``; None when its namespace is not configured.

        The private prefix ("$") is stripped first; the namespace is the part before the
        first namespace boundary (":"), as in Centrifugo.
        """
        return self.channel.namespace_options(self._namespace_name(channel))

    def channel_name_allowed(self, channel: str, options: ChannelOptions) -> bool:
        """Whether ``channel`` passes its namespace's ``channel_regex`` (always, when unset).

        As Centrifugo: the regex is searched (not anchored: write ``^...$`` for a whole
        match) in the part after the namespace boundary, or in the whole name (private
        prefix included) for channels without a namespace.
        """
        pattern = options.channel_pattern
        if pattern is None:
            return True
        ch = self.channel
        rest = channel
        if ch.private_prefix and rest.startswith(ch.private_prefix):
            rest = rest[len(ch.private_prefix) :]
        _, sep, tail = rest.partition(ch.namespace_boundary)
        return pattern.search(tail if sep else channel) is not None

    def _namespace_name(self, channel: str) -> str:
        ch = self.channel
        if ch.private_prefix and channel.startswith(ch.private_prefix):
            channel = channel[len(ch.private_prefix) :]
        head, sep, _ = channel.partition(ch.namespace_boundary)
        return head if sep else ""


def user_limited_users(config: Config, channel: str) -> list[str] | None:
    """Users allowed in a user-limited channel ("dialog#42,43" -> ["42", "43"]).

    None when the channel has no user boundary ("#"). Empty names are dropped, so
    "dialog#" allows nobody (not the anonymous user ""). Whether the namespace permits
    user-limited channels (``allow_user_limited_channels``) is the caller's check.
    """
    ch = config.channel
    _, sep, users = channel.rpartition(ch.user_boundary)
    if not sep:
        return None
    return [user for user in users.split(ch.user_separator) if user]


def config_from_mapping(data: Mapping[str, Any]) -> Config:
    """Build and validate a Config from a nested mapping (the parsed file layout).

    Error handling: ConfigError for unknown keys, bad values or failed cross-field
    checks; the message starts with the key path.
    """
    from broker.config.checks import validate  # late: checks reads Config's shape

    config: Config = build(Config, data, "")
    validate(config)
    return config


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load the file at ``path`` (optional), apply ``CHORUS_`` and ``CENTRIFUGO_``
    variables from ``env`` (default ``os.environ``), then ``overrides`` (nested mapping,
    e.g. CLI flags).

    Error handling: ConfigError for an unreadable/unparsable file, an unknown ``CHORUS_``
    or ``CENTRIFUGO_`` variable, and everything :func:`config_from_mapping` rejects.
    """
    raw: dict[str, Any] = read_file(os.fspath(path)) if path is not None else {}
    raw = apply_env(raw, os.environ if env is None else env, Config)
    if overrides:
        raw = deep_merge(raw, overrides)
    return config_from_mapping(raw)


def dump_starter_config() -> str:
    """A commented YAML starter config with fresh random secrets (``chorus genconfig``)."""
    from broker.config.starter import starter_config

    return starter_config()
