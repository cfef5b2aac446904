"""Cross-field checks run on every built Config (Centrifugo v6's rules plus Chorus's).

Each check raises ConfigError naming the key at fault; the first failure wins, so a
user fixes problems one clear message at a time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from broker.config.consumers import validate_consumers
from broker.config.keys import load_keyset
from broker.config.parse import ConfigError
from broker.config.proxy import validate_proxies
from broker.config.pusher import validate_pusher

if TYPE_CHECKING:
    from broker.config import ChannelOptions, Config

NAMESPACE_NAME = re.compile(r"^[-a-zA-Z0-9_.]{2,}$")
_HOST_PORT = re.compile(r"^\[?[^\s/\[\]]+\]?:\d{1,5}$")


def validate(config: Config) -> None:
    """Run every cross-field check; raise ConfigError at the first failure."""
    _check_http_server(config)
    _check_engine(config)
    _check_tokens(config)
    _check_client(config)
    _check_channels(config)
    _check_single_writer(config)
    _check_personal_channel(config)
    _check_http_api_and_admin(config)
    _check_prometheus(config)
    validate_proxies(config)
    validate_consumers(config.consumers)
    validate_pusher(config.pusher)


MIN_HMAC_KEY_BYTES = 32  # HS256's hash size; HS384/512 want more, PyJWT checks those too


def config_warnings(config: Config) -> list[str]:
    """What loads but will not work as someone probably expects, each naming its key.

    ``chorus checkconfig`` prints these and a starting node logs them. A missing
    ``http_api.key`` is a warning, as in Centrifugo v6 (which starts without one and
    answers every API call 401): the SDKs' own test configs set none. A missing
    ``prometheus.token`` is a warning, not an error as a missing ``admin.secret`` is:
    the admin API is off unless ``admin.enabled`` asks for it, while ``/metrics`` is on
    by default, and refusing would stop every config that never mentions Prometheus
    (any Centrifugo config) from starting. ``/metrics`` then answers 401 naming the key.
    """
    found: list[str] = []
    if not config.http_api.key and not config.http_api.insecure:
        found.append("http_api.key: not set, so the server API (POST /api/...) refuses "
                     "every request (401); set it, or http_api.insecure: true")
    prometheus = config.prometheus
    if prometheus.enabled and not prometheus.insecure and not prometheus.token:
        found.append("prometheus.token: not set, so GET /metrics refuses every scrape (401); "
                     "set it and send it as the scraper's bearer token, set "
                     "prometheus.insecure: true, or prometheus.enabled: false")
    for name in ("token", "subscription_token"):
        secret = getattr(config.client, name).hmac_secret_key
        if secret and len(secret.encode()) < MIN_HMAC_KEY_BYTES:
            # Said once here instead of PyJWT's warning on every token it verifies.
            found.append(
                f"client.{name}.hmac_secret_key: {len(secret.encode())} bytes, shorter than "
                f"the {MIN_HMAC_KEY_BYTES} that HS256 needs (RFC 7518 section 3.2): tokens "
                "signed with it can be brute-forced; use a random key of 32+ bytes")
    found += [f"consumers[{i}].enabled: false, so consumer {c.name!r} does not run"
              for i, c in enumerate(config.consumers) if not c.enabled]
    return found


def _check_http_server(config: Config) -> None:
    tls = config.http_server.tls
    if bool(tls.cert_pem_file) != bool(tls.key_pem_file):
        missing = "key_pem_file" if tls.cert_pem_file else "cert_pem_file"
        raise ConfigError(f"http_server.tls.{missing}: required together with the other TLS file")
    if tls.enabled:
        if not tls.cert_pem_file:
            raise ConfigError("http_server.tls.cert_pem_file: required when tls.enabled is true")
        for name in ("cert_pem_file", "key_pem_file"):
            file = getattr(tls, name)
            if not Path(file).is_file():
                raise ConfigError(f"http_server.tls.{name}: file {file!r} not found")


def _check_engine(config: Config) -> None:
    redis = config.engine.redis
    if redis.replica_acks and redis.cluster_address:
        raise ConfigError("engine.redis.replica_acks: not supported with cluster_address "
                          "(WAIT must follow each write on its own connection); use 0")
    if redis.replica_ack_timeout <= 0:
        raise ConfigError("engine.redis.replica_ack_timeout: must be > 0")
    for key in ("address", "sentinel_address", "cluster_address"):
        for i, addr in enumerate(getattr(redis, key)):
            if not _valid_redis_address(addr):
                raise ConfigError(
                    f'engine.redis.{key}[{i}]: expected "host:port" or a redis:// URL, got "{addr}"'
                )
    if redis.sentinel_address and not redis.sentinel_master_name:
        raise ConfigError("engine.redis.sentinel_master_name: required with sentinel_address")
    if redis.sentinel_address and redis.cluster_address:
        raise ConfigError("engine.redis.cluster_address: cannot be combined with sentinel_address")
    if config.engine.type == "redis" and not (
        redis.address or redis.sentinel_address or redis.cluster_address
    ):
        raise ConfigError("engine.redis.address: at least one Redis address is required")
    if redis.cluster_address and redis.db:
        raise ConfigError("engine.redis.db: Redis Cluster has only db 0 (cluster_address is set)")
    if config.notifications.read_from_replica and not (
        config.engine.type == "redis" and redis.sentinel_address
    ):
        raise ConfigError("notifications.read_from_replica: needs engine.type redis with "
                          "engine.redis.sentinel_address (replicas are found through Sentinel)")


def _valid_redis_address(addr: str) -> bool:
    if "://" in addr:
        parts = urlsplit(addr)
        return parts.scheme in ("redis", "rediss", "unix") and bool(parts.hostname or parts.path)
    return bool(_HOST_PORT.match(addr))


def _check_tokens(config: Config) -> None:
    client = config.client
    # Parsing the keys here makes a broken PEM or JWKS fail at start, not at first connect.
    load_keyset(client.token, "client.token")
    if client.subscription_token.enabled:
        if not client.subscription_token.has_key:
            raise ConfigError(
                "client.subscription_token: a key (hmac_secret_key, rsa_public_key, "
                "ecdsa_public_key or jwks_file) is required when enabled"
            )
        load_keyset(client.subscription_token, "client.subscription_token")
    if not client.token.has_key and not (
        client.insecure or client.allow_anonymous_connect_without_token
        or client.proxy.connect.enabled  # the application authenticates connections
    ):
        raise ConfigError(
            "client.token: a key (hmac_secret_key, rsa_public_key, ecdsa_public_key or "
            "jwks_file) is required unless client.insecure, "
            "client.allow_anonymous_connect_without_token or client.proxy.connect.enabled "
            "is true"
        )


def _check_client(config: Config) -> None:
    client = config.client
    if client.ping_interval > 0 and client.pong_timeout >= client.ping_interval:
        raise ConfigError(
            f"client.pong_timeout: must be less than client.ping_interval "
            f"({client.pong_timeout:g}s >= {client.ping_interval:g}s)"
        )
    for name in ("command_rate_limit", "connect_rate_limit_per_ip"):
        limit = getattr(client, name)
        if limit.enabled and limit.rate_per_second <= 0:
            raise ConfigError(f"client.{name}.rate_per_second: must be > 0 when enabled")


def _check_channels(config: Config) -> None:
    ch = config.channel
    for name in ("namespace_boundary", "user_boundary", "user_separator", "private_prefix"):
        if not getattr(ch, name):
            raise ConfigError(f"channel.{name}: must not be empty")
    _check_options(ch.without_namespace, "channel.without_namespace", ch.history_meta_ttl)
    seen: set[str] = set()
    for i, ns in enumerate(ch.namespaces):
        path = f"channel.namespaces[{i}]"
        if not NAMESPACE_NAME.match(ns.name):
            raise ConfigError(
                f'{path}.name: "{ns.name}" must match {NAMESPACE_NAME.pattern} '
                "(2+ letters, digits, '-', '_' or '.')"
            )
        if ns.name in seen:
            raise ConfigError(f'{path}.name: duplicate namespace "{ns.name}"')
        seen.add(ns.name)
        _check_options(ns.options, path, ch.history_meta_ttl)


def _check_options(opts: ChannelOptions, path: str, meta_ttl: float) -> None:
    # The engines keep one meta TTL (channel.history_meta_ttl); a namespace's own value
    # would be accepted and never applied, so it is refused.
    if opts.history_meta_ttl != meta_ttl:
        raise ConfigError(
            f"{path}.history_meta_ttl: a per-namespace value is not supported (the engine "
            f"keeps one meta TTL for every channel); set channel.history_meta_ttl instead")
    if opts.history_size > 0 and opts.history_ttl == 0:
        raise ConfigError(f"{path}.history_ttl: required when history_size > 0")
    if opts.history_ttl > 0 and opts.history_size == 0:
        raise ConfigError(f"{path}.history_size: required when history_ttl > 0")
    for name in ("history_ttl", "history_meta_ttl"):
        value = getattr(opts, name)
        if value != int(value):
            raise ConfigError(f"{path}.{name}: sub-second precision is not supported ({value:g}s)")
    if opts.history_ttl > opts.history_meta_ttl:
        raise ConfigError(
            f"{path}.history_ttl: must not exceed history_meta_ttl "
            f"({opts.history_ttl:g}s > {opts.history_meta_ttl:g}s)"
        )
    if opts.force_recovery and not opts.history_enabled:
        raise ConfigError(f"{path}.force_recovery: needs history_size and history_ttl")


def _check_single_writer(config: Config) -> None:
    """An explicit ``cache_policy: write_behind`` acknowledges offsets from this node's
    L1: with other writers (``CacheConfig.other_writers``) two nodes could acknowledge
    the same offset, so it needs the ``cache.single_writer`` declaration."""
    others = config.cache.other_writers(config.engine.type)
    if not others:
        return
    scopes = [("channel.without_namespace", "channels without namespace",
               config.channel.without_namespace)]
    scopes += [(f"channel.namespaces[{i}]", f'namespace "{ns.name}"', ns.options)
               for i, ns in enumerate(config.channel.namespaces)]
    for path, what, opts in scopes:
        if opts.cache_policy == "write_behind":
            raise ConfigError(
                f"{path}.cache_policy: write_behind ({what}) needs a single writer per "
                f"channel: {others}; otherwise use write_through")


def check_workers(config: Config, workers: int) -> None:
    """``chorus serve --workers N`` (N > 1) spreads publishes over N processes, so no
    one of them is a single writer: ``cache.single_writer: true`` cannot hold.

    Error handling: ConfigError naming the key (the CLI calls this, as only it knows N).
    """
    if workers > 1 and config.cache.single_writer:
        raise ConfigError(
            f"cache.single_writer: true contradicts --workers {workers} (every worker "
            "publishes to the same channels); drop one or the other")


def _check_personal_channel(config: Config) -> None:
    personal = config.client.subscribe_to_user_personal_channel
    if not personal.enabled:
        return
    name = personal.personal_channel_namespace
    opts = config.channel.namespace_options(name)
    if opts is None:
        raise ConfigError(
            "client.subscribe_to_user_personal_channel.personal_channel_namespace: "
            f'namespace "{name}" is not defined in channel.namespaces'
        )
    if personal.single_connection and not opts.presence:
        where = f'namespace "{name}"' if name else "channel.without_namespace"
        raise ConfigError(
            "client.subscribe_to_user_personal_channel.single_connection: "
            f"needs presence enabled in {where}"
        )


def _check_http_api_and_admin(config: Config) -> None:
    admin = config.admin
    if admin.enabled and not admin.insecure:
        for name in ("password", "secret"):
            if not getattr(admin, name):
                raise ConfigError(
                    f"admin.{name}: required when admin.enabled (unless admin.insecure is true)"
                )


def _check_prometheus(config: Config) -> None:
    token = config.prometheus.token
    if token and token == config.admin.secret:
        raise ConfigError("prometheus.token: must differ from admin.secret (a scraper's "
                          "credential must not open the admin API)")
