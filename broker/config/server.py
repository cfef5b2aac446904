"""The node's own sections: ``http_server`` (and its ``tls``), ``log``, ``engine`` (and
``engine.redis``: Redis standalone, Sentinel or Cluster), ``http_api``, ``admin``,
``prometheus`` and ``chorus``.

Part of the schema of :class:`broker.config.Config`; import these names from
:mod:`broker.config`, which re-exports them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from broker.config.parse import DURATION, opt


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
