"""Configuration of the async consumers (``consumers: [...]``), in Centrifugo v6's layout.

Each item is ``{name, enabled, type, postgresql: {...}}`` or ``{..., type: redis_stream,
redis_stream: {...}}`` with Centrifugo's key names and defaults, so a Centrifugo config
(and its outbox table or stream) works unchanged for the two consumer types Chorus has.
As in Centrifugo, a consumer runs only with ``enabled: true``.

Error handling: :func:`validate_consumers` raises ConfigError naming the key
(``consumers[1].postgresql.outbox_table_name: ...``); names and SQL identifiers are
checked strictly because they end up in SQL text, lock keys and metric labels.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from broker.config.parse import DURATION, ConfigError, opt

__all__ = [
    "CONSUMER_TYPES",
    "ConsumerConfig",
    "PostgresConsumerConfig",
    "RedisStreamConsumerConfig",
    "validate_consumers",
]

CONSUMER_TYPES = ("postgresql", "redis_stream")
CONSUMER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A table name, optionally schema-qualified; interpolated into SQL, so nothing else.
SQL_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
SQL_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class PostgresConsumerConfig:
    """The outbox table consumer (Centrifugo's ``postgresql`` consumer keys).

    TLS is set in the DSN (``sslmode=require``), which asyncpg reads.
    """

    dsn: str = opt("")
    outbox_table_name: str = opt("")
    num_partitions: int = opt(1, min=1, max=1024)
    partition_select_limit: int = opt(100, min=1, max=100000)
    partition_poll_interval: float = opt(0.3, kind=DURATION, min=0.001)
    partition_notification_channel: str = opt("")  # "" = poll only (no LISTEN)


@dataclass(frozen=True, slots=True)
class RedisStreamConsumerConfig:
    """The Redis Stream consumer (Centrifugo's ``redis_stream`` keys, Redis inline).

    Every stream is one partition: consumed in order by one node at a time.
    """

    address: tuple[str, ...] = opt(())  # "host:port" or redis:// URLs; the first is used
    user: str = opt("")
    password: str = opt("")
    db: int = opt(0)
    connect_timeout: float = opt(1.0, kind=DURATION)
    io_timeout: float = opt(4.0, kind=DURATION)
    streams: tuple[str, ...] = opt(())
    consumer_group: str = opt("")
    # How long a stream's owner may stay silent before another node takes the stream
    # over and re-delivers its unacknowledged entries (Centrifugo: re-queue timeout).
    visibility_timeout: float = opt(30.0, kind=DURATION, min=0.1)
    # Centrifugo's per-stream concurrency; one worker keeps a stream in order, so 1 only.
    num_workers: int = opt(1, min=1, max=1)
    payload_value: str = opt("payload")
    method_value: str = opt("method")


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """An item of the top-level ``consumers`` list: one asynchronous consumer."""

    name: str = opt("")
    enabled: bool = opt(False)  # Centrifugo's rule: only enabled consumers run
    type: str = opt("postgresql", choices=CONSUMER_TYPES)
    postgresql: PostgresConsumerConfig = field(default_factory=PostgresConsumerConfig)
    redis_stream: RedisStreamConsumerConfig = field(default_factory=RedisStreamConsumerConfig)


def validate_consumers(consumers: tuple[ConsumerConfig, ...]) -> None:
    """Names unique and safe; the section of each enabled consumer's type complete
    (a disabled one is only checked for its name)."""
    seen: set[str] = set()
    for i, consumer in enumerate(consumers):
        path = f"consumers[{i}]"
        if not CONSUMER_NAME.match(consumer.name):
            raise ConfigError(f"{path}.name: required, 1-64 letters, digits, '-' or '_' "
                              f"(got {consumer.name!r})")
        if consumer.name in seen:
            raise ConfigError(f"{path}.name: duplicate consumer name {consumer.name!r}")
        seen.add(consumer.name)
        if not consumer.enabled:  # a draft entry does not stop the start
            continue
        if consumer.type == "postgresql":
            _check_postgres(consumer.postgresql, f"{path}.postgresql")
        else:
            _check_redis_stream(consumer.redis_stream, f"{path}.redis_stream")


def _check_postgres(pg: PostgresConsumerConfig, path: str) -> None:
    if importlib.util.find_spec("asyncpg") is None:
        raise ConfigError(f"{path.rsplit('.', 1)[0]}.type: postgresql needs the asyncpg "
                          "driver: pip install 'chorus-broker[postgres]'")
    if not pg.dsn:
        raise ConfigError(f"{path}.dsn: required (postgresql://user:password@host:5432/db)")
    parts = urlsplit(pg.dsn)
    try:
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        port = -1
    if parts.scheme not in ("postgres", "postgresql") or port == -1:
        raise ConfigError(f"{path}.dsn: expected a postgresql://user:password@host:port/db "
                          "URL")
    if not SQL_TABLE.match(pg.outbox_table_name):
        raise ConfigError(f"{path}.outbox_table_name: required, a table name such as "
                          f"chorus_outbox or myschema.chorus_outbox (got "
                          f"{pg.outbox_table_name!r})")
    channel = pg.partition_notification_channel
    if channel and not SQL_IDENTIFIER.match(channel):
        raise ConfigError(f"{path}.partition_notification_channel: must be an SQL identifier "
                          f"(letters, digits, '_'), got {channel!r}")


def _check_redis_stream(rs: RedisStreamConsumerConfig, path: str) -> None:
    if not rs.address:
        raise ConfigError(f"{path}.address: at least one Redis address is required")
    for i, addr in enumerate(rs.address):
        if "://" in addr:
            ok = urlsplit(addr).scheme in ("redis", "rediss") and bool(urlsplit(addr).hostname)
        else:
            host, _, port = addr.rpartition(":")
            ok = bool(host) and port.isdigit()
        if not ok:
            raise ConfigError(f'{path}.address[{i}]: expected "host:port" or a redis:// URL, '
                              f'got "{addr}"')
    if not rs.streams:
        raise ConfigError(f"{path}.streams: at least one stream is required")
    if len(set(rs.streams)) != len(rs.streams):
        raise ConfigError(f"{path}.streams: duplicate stream names")
    if not rs.consumer_group:
        raise ConfigError(f"{path}.consumer_group: required")
    if not rs.payload_value or not rs.method_value:
        raise ConfigError(f"{path}.payload_value / method_value: must not be empty")
