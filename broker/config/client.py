"""Client sections: ``client`` (tokens, limits, rate limits, personal channel, proxies)
and ``websocket``.

Part of the schema of :class:`broker.config.Config`; import these names from
:mod:`broker.config`, which re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.config.parse import DURATION, ConfigError, opt
from broker.config.proxy import ClientProxyConfig


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
    # Centrifugo PRO: frames wait this long to be written, so more share one write
    # (latency for CPU, always); 0 = written when the loop iteration ends.
    write_delay: float = opt(0.0, kind=DURATION, min=0.0, max=1.0)
    # Chorus extension: the same wait, but only while the node is in a burst (a tick
    # coalesced several frames for one socket); see broker.connection.outbox.
    burst_write_delay: float = opt(0.001, kind=DURATION, min=0.0, max=1.0)
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
    every subscriber. ``detach`` (Chorus extension, on by default): after the upgrade the
    socket leaves aiohttp's request machinery (``broker.transport.wsdirect``), which cuts
    an idle connection's memory by about two thirds; ``false`` keeps aiohttp's reader
    (``WebSocketResponse``) for the socket's life (see docs/ARCHITECTURE.md)."""

    message_size_limit: int = opt(65536, min=1)
    read_buffer_size: int = opt(0)
    write_timeout: float = opt(1.0, kind=DURATION)
    compression: bool = opt(False)
    detach: bool = opt(True)

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
