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
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from broker.config.consumers import ConsumerConfig
from broker.config.env import apply_env
from broker.config.ops import CacheConfig, JourneysConfig, MonitorConfig, NotificationsConfig
from broker.config.parse import (
    DURATION,
    NAMESPACES,
    SECTIONS,
    ConfigError,
    SectionError,
    build,
    deep_merge,
    opt,
    read_file,
)
from broker.config.proxy import (
    ChannelProxyConfig,
    ClientProxyConfig,
    NamedProxyConfig,
    ProxyConfig,
    RpcConfig,
)
from broker.config.pusher import PusherConfig
from broker.config.transports import (
    EmulationConfig,
    HttpStreamConfig,
    SseConfig,
    UniHttpStreamConfig,
    UniSseConfig,
    UniWebSocketConfig,
)

__all__ = [
    "CacheConfig",
    "ChannelNamespace",
    "ChannelOptions",
    "Config",
    "ConfigError",
    "ConsumerConfig",
    "JourneysConfig",
    "MonitorConfig",
    "NotificationsConfig",
    "ProxyConfig",
    "config_from_mapping",
    "dump_starter_config",
    "load_config",
    "user_limited_users",
]

UNKNOWN_NAMESPACE = "(unknown)"  # metrics label; parentheses cannot occur in a real name
DATA_FORMATS = ("", "json", "json_object", "binary")  # publication_data_format values


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """``http_server.tls``: serve HTTPS with this certificate and key."""

    enabled: bool = opt(False)
    cert_pem_file: str = opt("")
    key_pem_file: str = opt("")


@dataclass(frozen=True, slots=True)
class HttpServerConfig:
    """``http_server``: where the node listens."""

    address: str = opt("")  # "" = all interfaces
    port: int = opt(8000, min=0, max=65535)  # 0 = any free port (tests)
    tls: TLSConfig = field(default_factory=TLSConfig)


@dataclass(frozen=True, slots=True)
class LogConfig:
    """``log``: the level of the node's log."""

    level: str = opt("info", choices=("trace", "debug", "info", "warn", "error", "fatal", "none"))


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """``engine.redis``: the Redis (standalone, Sentinel or Cluster) nodes share."""

    address: tuple[str, ...] = opt(("redis://127.0.0.1:6379",))  # "host:port" or redis:// URLs
    prefix: str = opt("chorus")  # not Centrifugo's "centrifugo": the stored formats differ
    db: int = opt(0)
    user: str = opt("")
    password: str = opt("")
    connect_timeout: float = opt(1.0, kind=DURATION)
    io_timeout: float = opt(4.0, kind=DURATION)
    sentinel_address: tuple[str, ...] = opt(())
    sentinel_master_name: str = opt("")
    sentinel_password: str = opt("")
    cluster_address: tuple[str, ...] = opt(())
    # Chorus extension: a publication with history is acknowledged only once this many
    # replicas have it (Redis WAIT after the publish, one WAIT per pipeline), so a
    # failover cannot lose an acknowledged publication; 0 = off, as in Centrifugo.
    replica_acks: int = opt(0, min=0)
    replica_ack_timeout: float = opt(1.0, kind=DURATION)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """``engine``: memory (one node) or redis (nodes joined)."""

    type: str = opt("memory", choices=("memory", "redis"))
    redis: RedisConfig = field(default_factory=RedisConfig)


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """Keys and claim checks for connection tokens (and subscription tokens by default)."""

    hmac_secret_key: str = opt("")
    rsa_public_key: str = opt("")  # PEM text
    ecdsa_public_key: str = opt("")  # PEM text
    jwks_file: str = opt("")  # Chorus extension: path to a JWKS JSON file (keys by "kid")
    audience: str = opt("")
    issuer: str = opt("")

    @property
    def has_key(self) -> bool:
        """True when at least one verification key is configured."""
        keys = (self.hmac_secret_key, self.rsa_public_key, self.ecdsa_public_key, self.jwks_file)
        return any(keys)


@dataclass(frozen=True, slots=True)
class SubscriptionTokenConfig(TokenConfig):
    """When ``enabled``, subscription tokens use these keys; otherwise ``client.token``'s."""

    enabled: bool = opt(False)


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Chorus extension: a token bucket (``rate_per_second`` refill, ``burst`` capacity)."""

    enabled: bool = opt(False)
    rate_per_second: float = opt(100.0)
    burst: int = opt(200, min=1)


def _connect_limit() -> RateLimitConfig:
    return RateLimitConfig(rate_per_second=20.0, burst=50)


@dataclass(frozen=True, slots=True)
class PersonalChannelConfig:
    """``client.subscribe_to_user_personal_channel``: a server-side personal channel."""

    enabled: bool = opt(False)
    personal_channel_namespace: str = opt("")
    single_connection: bool = opt(False)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """``client``: how connections authenticate, and their limits."""

    token: TokenConfig = field(default_factory=TokenConfig)
    subscription_token: SubscriptionTokenConfig = field(default_factory=SubscriptionTokenConfig)
    allowed_origins: tuple[str, ...] = opt(())
    insecure: bool = opt(False)
    allow_anonymous_connect_without_token: bool = opt(False)
    ping_interval: float = opt(25.0, kind=DURATION)  # 0 disables server pings
    pong_timeout: float = opt(8.0, kind=DURATION)  # 0 disables the pong check
    expired_close_delay: float = opt(25.0, kind=DURATION)
    expired_sub_close_delay: float = opt(25.0, kind=DURATION)
    presence_update_interval: float = opt(27.0, kind=DURATION)
    channel_limit: int = opt(128)
    user_connection_limit: int = opt(0)  # 0 = off
    connection_limit: int = opt(0)  # 0 = off; per node
    queue_max_size: int = opt(1048576, min=1)  # outbox bound in bytes
    history_max_publication_limit: int = opt(300)
    recovery_max_publication_limit: int = opt(300)
    subscribe_to_user_personal_channel: PersonalChannelConfig = field(
        default_factory=PersonalChannelConfig
    )
    connect_include_server_time: bool = opt(False)
    # Centrifugo v6: how long a socket may stay open without a connect command.
    stale_close_delay: float = opt(10.0, kind=DURATION, min=0.001)
    # Centrifugo v6: a connection token without a user (empty "sub") is refused (3507).
    disallow_anonymous_connection_tokens: bool = opt(False)
    command_rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    connect_rate_limit_per_ip: RateLimitConfig = field(
        default_factory=_connect_limit, metadata={"section": RateLimitConfig}
    )
    # Centrifugo v6: connect and refresh proxies (broker.config.proxy, broker.proxy).
    proxy: ClientProxyConfig = field(default_factory=ClientProxyConfig)


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """``write_timeout``: a connection whose socket takes none of the bytes written to it
    for this long is closed with 3009 "write error" (centrifuge's meaning; see
    :class:`broker.connection.writewatch.WriteWatch`). ``read_buffer_size`` must stay 0:
    reads go through the event loop's one shared buffer, there is no per-connection
    buffer to size. Compression cannot be turned on: a broadcast frame is built once for
    every subscriber. ``detach`` (Chorus extension): after the upgrade the socket leaves
    aiohttp's request machinery (``broker.transport.wsdirect``), which cuts an idle
    connection's memory by about two thirds; off by default while a difference in how a
    client's pipelined burst is paced against its own effects is open (see
    docs/ARCHITECTURE.md)."""

    message_size_limit: int = opt(65536, min=1)
    read_buffer_size: int = opt(0)
    write_timeout: float = opt(1.0, kind=DURATION)
    compression: bool = opt(False)
    detach: bool = opt(False)

    def __post_init__(self) -> None:
        if self.compression:
            raise ConfigError("websocket.compression: not supported (frames are built once "
                              "per broadcast and shared by every subscriber)")
        if self.read_buffer_size:
            raise ConfigError("websocket.read_buffer_size: not supported (reads use the event "
                              "loop's shared buffer, there is no per-connection buffer to "
                              "size); remove the key or set it to 0")
        if self.write_timeout <= 0:
            raise ConfigError("websocket.write_timeout: must be > 0 (Centrifugo also treats "
                              "0 as its 1s default; Chorus asks for the value explicitly)")


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """Behaviour of the channels without a namespace or of one namespace.

    ``history_meta_ttl`` is the global ``channel.history_meta_ttl`` (a namespace may
    repeat it; another value is refused: the engines keep one meta TTL).
    ``publication_data_format`` is the effective value: the namespace's own, else the
    global ``channel.publication_data_format``. ``force_recovery_mode`` is "stream" or
    "cache" ("" in a file means "stream").
    """

    presence: bool = opt(False)
    join_leave: bool = opt(False)
    force_push_join_leave: bool = opt(False)
    history_size: int = opt(0)
    history_ttl: float = opt(0.0, kind=DURATION)
    history_meta_ttl: float = opt(0.0, kind=DURATION)
    force_positioning: bool = opt(False)
    allow_positioning: bool = opt(False)
    force_recovery: bool = opt(False)
    allow_recovery: bool = opt(False)
    force_recovery_mode: str = opt("stream", choices=("", "stream", "cache"))
    allowed_delta_types: tuple[str, ...] = opt((), choices=("fossil",))
    allow_subscribe_for_client: bool = opt(False)
    allow_subscribe_for_anonymous: bool = opt(False)
    allow_publish_for_subscriber: bool = opt(False)
    allow_publish_for_client: bool = opt(False)
    allow_publish_for_anonymous: bool = opt(False)
    allow_presence_for_subscriber: bool = opt(False)
    allow_presence_for_client: bool = opt(False)
    allow_presence_for_anonymous: bool = opt(False)
    allow_history_for_subscriber: bool = opt(False)
    allow_history_for_client: bool = opt(False)
    allow_history_for_anonymous: bool = opt(False)
    allow_user_limited_channels: bool = opt(False)
    allow_tags_filter: bool = opt(False)  # Centrifugo v6: subscribers may send a tags filter
    # Client subscribe/publish/presence/history to a name not matching it: 107 (see
    # Config.channel_name_allowed).
    channel_regex: str = opt("")
    # Chorus extension: the shard-level L1 history cache (see broker.cache).
    cache_policy: str = opt("write_through", choices=(
        "write_through", "write_behind", "read_through", "off"))
    cache_flush_delay: float = opt(0.05, kind=DURATION, min=0.001)  # write-behind window
    # Centrifugo v6: cache mode answers every subscriber, not only those sending recover.
    auto_cache_recover: bool = opt(False)
    # Centrifugo v6: every publication is published with delta (as the API's per-call
    # "delta" field), so subscribers that negotiated fossil deltas get deltas; without
    # it they get each publication in full.
    delta_publish: bool = opt(False)
    # Centrifugo v6: what publication data must be: "" (the default) not empty, "json"
    # valid JSON, "json_object" a JSON object, "binary" anything, empty included. ""
    # takes channel.publication_data_format (see ChannelConfig).
    publication_data_format: str = opt("", choices=DATA_FORMATS)
    # Centrifugo v6 (PRO there): SDKs may negotiate a numeric channel id in place of the
    # channel name in publication, join and leave pushes (subscribe flag bit 1).
    allow_channel_compaction: bool = opt(False)
    # Centrifugo v6: only "stream" ("" means it); map and shared_poll are not supported.
    subscription_type: str = opt("stream", choices=("", "stream"))
    # Centrifugo v6: ask the application (an HTTP proxy, or an @chorus.on_... hook) about
    # subscribes, client publications and subscription refreshes (broker.proxy).
    subscribe_proxy_enabled: bool = opt(False)
    subscribe_proxy_name: str = opt("default")
    publish_proxy_enabled: bool = opt(False)
    publish_proxy_name: str = opt("default")
    sub_refresh_proxy_enabled: bool = opt(False)
    sub_refresh_proxy_name: str = opt("default")
    # ``channel_regex`` compiled once, here (None when empty).
    channel_pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.force_recovery_mode == "":
            object.__setattr__(self, "force_recovery_mode", "stream")
        pattern = None
        if self.channel_regex:
            # Centrifugo compiles RE2 (Go regexp); Python's ``re`` reads the same syntax
            # for everything RE2 has, and adds back-references and look-arounds.
            try:
                pattern = re.compile(self.channel_regex)
            except re.error as exc:
                raise SectionError(
                    f"channel_regex: invalid regular expression: {exc}") from None
        object.__setattr__(self, "channel_pattern", pattern)

    @property
    def history_enabled(self) -> bool:
        """True when the channel keeps a history stream (size and TTL both set)."""
        return self.history_size > 0 and self.history_ttl > 0


@dataclass(frozen=True, slots=True)
class ChannelNamespace:
    """An item of ``channel.namespaces``: a name and its channel options."""

    name: str
    options: ChannelOptions = field(default_factory=ChannelOptions)


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """``channel``: channel names and the options of each namespace."""

    max_length: int = opt(255, min=1)
    namespace_boundary: str = opt(":")
    user_boundary: str = opt("#")
    user_separator: str = opt(",")
    private_prefix: str = opt("$")
    history_meta_ttl: float = opt(30 * 24 * 3600.0, kind=DURATION)  # Centrifugo: 720h
    # Centrifugo v6: the publication_data_format of namespaces that set none.
    publication_data_format: str = opt("", choices=DATA_FORMATS)
    without_namespace: ChannelOptions = field(default_factory=ChannelOptions)
    namespaces: tuple[ChannelNamespace, ...] = opt(
        (), kind=NAMESPACES, item=ChannelNamespace, options=ChannelOptions
    )
    proxy: ChannelProxyConfig = field(default_factory=ChannelProxyConfig)  # "default" proxies
    _index: Mapping[str, ChannelOptions] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Resolve the effective values once, so readers never need the fallback.
        resolve = self._resolve
        object.__setattr__(self, "without_namespace", resolve(self.without_namespace))
        namespaces = tuple(ChannelNamespace(ns.name, resolve(ns.options)) for ns in self.namespaces)
        object.__setattr__(self, "namespaces", namespaces)
        index = {ns.name: ns.options for ns in namespaces}
        object.__setattr__(self, "_index", MappingProxyType(index))

    def _resolve(self, options: ChannelOptions) -> ChannelOptions:
        changes: dict[str, Any] = {}
        if options.history_meta_ttl <= 0:
            changes["history_meta_ttl"] = self.history_meta_ttl
        if not options.publication_data_format:
            changes["publication_data_format"] = self.publication_data_format
        return dataclasses.replace(options, **changes) if changes else options

    def namespace_options(self, name: str) -> ChannelOptions | None:
        """Options of namespace ``name`` ("" = channels without namespace); None if unknown."""
        if name == "":
            return self.without_namespace
        return self._index.get(name)


@dataclass(frozen=True, slots=True)
class HttpApiConfig:
    """``http_api``: the server API's key (``X-API-Key`` / ``Authorization: apikey``)."""

    key: str = opt("")
    insecure: bool = opt(False)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """``admin``: the web console and its credentials."""

    enabled: bool = opt(False)
    password: str = opt("")  # for the web UI login
    secret: str = opt("")  # signs admin session tokens
    insecure: bool = opt(False)
    allow_crash_actor: bool = opt(False)  # Chorus extension, for demos and tests


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    """``prometheus``: the ``/metrics`` endpoint and who may scrape it."""

    # Centrifugo defaults to false; Chorus serves /metrics unless told not to
    # ("observable always").
    enabled: bool = opt(True)
    # Chorus extension: the only bearer /metrics accepts ("Authorization: Bearer <token>"),
    # kept apart from admin.secret so a scraper's credential opens nothing else.
    token: str = opt("")
    # /metrics needs the token unless this is true.
    insecure: bool = opt(False)


@dataclass(frozen=True, slots=True)
class ChorusConfig:
    """``chorus``: Chorus-only node settings (shards, shutdown, node name)."""

    shard_count: int = opt(16, min=1, max=4096)
    shutdown_timeout: float = opt(10.0, kind=DURATION)
    node_name: str = opt("")  # "" = the host name

    @property
    def resolved_node_name(self) -> str:
        """``node_name``, or the host name when it is empty."""
        return self.node_name or socket.gethostname()


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
