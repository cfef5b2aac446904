"""Configuration of event proxies (Centrifugo v6 layout) and of RPC namespaces.

Where each part lives, as in Centrifugo v6, so a v6 config with HTTP proxies loads:

* ``client.proxy.connect`` / ``client.proxy.refresh``: ``enabled`` plus a proxy;
* ``channel.proxy.subscribe|publish|sub_refresh``: the proxy named ``default`` of that
  event, used by namespaces whose ``<event>_proxy_name`` is ``default`` (the default);
* ``proxies: [{name, endpoint, ...}]``: named proxies a namespace or an RPC namespace
  picks with ``subscribe_proxy_name``, ``publish_proxy_name``, ``sub_refresh_proxy_name``
  or ``proxy_name`` (``default`` is reserved for the sections above);
* ``rpc.proxy``, ``rpc.without_namespace``, ``rpc.namespaces``, ``rpc.namespace_boundary``,
  ``rpc.ping``.

A proxy is ``endpoint`` (http:// or https:// only: gRPC proxies are not supported),
``timeout``, ``http_headers`` (names copied from the client's HTTP upgrade request),
``emulated_headers`` (names copied from the headers an SDK sends in its connect command;
client-controlled, Centrifugo v6.9's split), ``binary_encoding``,
``include_connection_meta``, ``http.static_headers`` and ``http.status_to_code_transforms``.
Chorus extensions, per proxy: ``max_in_flight``/``max_queued`` (bounded concurrency) and
``breaker_failures``/``breaker_open_time`` (the circuit breaker, broker.proxy.breaker).

Error handling: ConfigError naming the key: a bad endpoint, a duplicate, reserved or
malformed proxy name, a namespace naming an unknown proxy. Whether an enabled event has a
backend at all (an endpoint, or an in-process hook registered with ``@chorus.on_...``)
is known only when the node starts: ``broker.proxy.registry`` checks it there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from broker.config.parse import DURATION, MAPPING, SECTIONS, ConfigError, SectionError, opt

if TYPE_CHECKING:
    from broker.config import ChannelOptions, Config

DEFAULT_PROXY = "default"
PROXY_NAME = re.compile(r"^[-a-zA-Z0-9_.]{2,}$")  # Centrifugo's proxyNamePattern


@dataclass(frozen=True, slots=True)
class TransformError:
    """The protocol error a backend's HTTP status is answered with."""

    code: int = opt(0)
    message: str = opt("")
    temporary: bool = opt(False)


@dataclass(frozen=True, slots=True)
class TransformDisconnect:
    """The disconnect a backend's HTTP status is answered with."""

    code: int = opt(0)
    reason: str = opt("")


@dataclass(frozen=True, slots=True)
class StatusTransform:
    """An HTTP status of the backend answered as a protocol error or disconnect."""

    status_code: int = opt(0)
    to_error: TransformError = field(default_factory=TransformError)
    to_disconnect: TransformDisconnect = field(default_factory=TransformDisconnect)

    def __post_init__(self) -> None:
        if not 100 <= self.status_code <= 599:
            raise SectionError(f"status_code: expected an HTTP status, got {self.status_code}")
        if (self.to_error.code > 0) == (self.to_disconnect.code > 0):
            raise SectionError("to_error: set exactly one of to_error and to_disconnect "
                               "(with a code > 0)")


@dataclass(frozen=True, slots=True)
class ProxyHttpConfig:
    """HTTP options of a proxy: static headers, status transforms."""

    # Sent with every request; headers taken from the client override them.
    static_headers: Any = field(default_factory=lambda: MappingProxyType({}),
                                metadata={"kind": MAPPING})
    status_to_code_transforms: tuple[StatusTransform, ...] = opt(
        (), kind=SECTIONS, item=StatusTransform)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """One proxy (see the module docstring)."""

    endpoint: str = opt("")
    timeout: float = opt(1.0, kind=DURATION, min=0.001)
    http_headers: tuple[str, ...] = opt(())
    emulated_headers: tuple[str, ...] = opt(())
    binary_encoding: bool = opt(False)
    include_connection_meta: bool = opt(False)
    http: ProxyHttpConfig = field(default_factory=ProxyHttpConfig)
    # Chorus extension: calls at once to this proxy, and calls waiting for a slot; past
    # both, a call fails at once (error 100) instead of piling up behind a slow backend.
    max_in_flight: int = opt(64, min=1)
    max_queued: int = opt(1024, min=0)
    # Chorus extension: consecutive failures (timeouts, connection errors, non-200
    # answers) that open the breaker; calls then fail at once for breaker_open_time,
    # after which one probe call decides (half-open).
    breaker_failures: int = opt(5, min=1)
    breaker_open_time: float = opt(5.0, kind=DURATION, min=0.001)

    def __post_init__(self) -> None:
        if self.endpoint and not self.endpoint.startswith(("http://", "https://")):
            raise SectionError(f"endpoint: only http:// and https:// proxies are supported "
                               f"(gRPC proxies are not), got {self.endpoint!r}")


@dataclass(frozen=True, slots=True)
class ConnectProxyConfig(ProxyConfig):
    """``client.proxy.connect``: asked on every connect without a token."""

    enabled: bool = opt(False)


@dataclass(frozen=True, slots=True)
class RefreshProxyConfig(ProxyConfig):
    """``client.proxy.refresh``: asked when a connection's ``expire_at`` comes."""

    enabled: bool = opt(False)


@dataclass(frozen=True, slots=True)
class NamedProxyConfig(ProxyConfig):
    """An item of the top-level ``proxies`` list."""

    name: str = opt("")


@dataclass(frozen=True, slots=True)
class ClientProxyConfig:
    """``client.proxy``: the connect and refresh proxies."""

    connect: ConnectProxyConfig = field(default_factory=ConnectProxyConfig)
    refresh: RefreshProxyConfig = field(default_factory=RefreshProxyConfig)


@dataclass(frozen=True, slots=True)
class ChannelProxyConfig:
    """The ``default`` proxy of each channel event."""

    subscribe: ProxyConfig = field(default_factory=ProxyConfig)
    publish: ProxyConfig = field(default_factory=ProxyConfig)
    sub_refresh: ProxyConfig = field(default_factory=ProxyConfig)


@dataclass(frozen=True, slots=True)
class RpcOptions:
    """``rpc.without_namespace`` and each RPC namespace: whether (and which) proxy."""

    proxy_enabled: bool = opt(False)
    proxy_name: str = opt(DEFAULT_PROXY)


@dataclass(frozen=True, slots=True)
class RpcNamespaceConfig(RpcOptions):
    """An RPC namespace: methods ``<name><boundary>...`` use its options."""

    name: str = opt("")


@dataclass(frozen=True, slots=True)
class RpcPingConfig:
    """Centrifugo's built-in RPC method answering an empty result (a liveness probe)."""

    enabled: bool = opt(False)
    method: str = opt("ping")


@dataclass(frozen=True, slots=True)
class RpcConfig:
    """``rpc``: RPC namespaces, their proxies and the built-in ping method."""

    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    without_namespace: RpcOptions = field(default_factory=RpcOptions)
    namespaces: tuple[RpcNamespaceConfig, ...] = opt((), kind=SECTIONS,
                                                     item=RpcNamespaceConfig)
    namespace_boundary: str = opt(":")
    ping: RpcPingConfig = field(default_factory=RpcPingConfig)

    def options(self, method: str) -> RpcOptions | None:
        """The RPC options of ``method`` (as Centrifugo: the part before the first
        boundary names the namespace); None when that namespace is not configured."""
        boundary = self.namespace_boundary
        if not boundary or boundary not in method:
            return self.without_namespace
        name = method.split(boundary, 1)[0]
        return next((ns for ns in self.namespaces if ns.name == name), None)


# Namespace options naming a channel proxy: (event, enabled field, name field).
CHANNEL_EVENTS = (("subscribe", "subscribe_proxy_enabled", "subscribe_proxy_name"),
                  ("publish", "publish_proxy_enabled", "publish_proxy_name"),
                  ("sub_refresh", "sub_refresh_proxy_enabled", "sub_refresh_proxy_name"))


def validate_proxies(config: Config) -> None:
    """Names unique and well formed, every reference resolvable (see module docstring)."""
    names: list[str] = []
    for i, proxy in enumerate(config.proxies):
        if not PROXY_NAME.match(proxy.name):
            raise ConfigError(f"proxies[{i}].name: must match {PROXY_NAME.pattern}, "
                              f"got {proxy.name!r}")
        if proxy.name == DEFAULT_PROXY:
            raise ConfigError(f"proxies[{i}].name: {DEFAULT_PROXY!r} is reserved (it names "
                              "channel.proxy.<event> and rpc.proxy)")
        if proxy.name in names:
            raise ConfigError(f"proxies[{i}].name: duplicate proxy name {proxy.name!r}")
        if not proxy.endpoint:
            raise ConfigError(f"proxies[{i}].endpoint: required")
        names.append(proxy.name)
    known = {DEFAULT_PROXY, *names}
    spaces = [("channel.without_namespace", config.channel.without_namespace)]
    spaces += [(f"channel.namespaces[{i}]", ns.options)
               for i, ns in enumerate(config.channel.namespaces)]
    for path, options in spaces:
        _check_channel_refs(path, options, known)
    rpc = config.rpc
    rpc_spaces: list[tuple[str, RpcOptions]] = [("rpc.without_namespace",
                                                  rpc.without_namespace)]
    seen: set[str] = set()
    for i, ns in enumerate(rpc.namespaces):
        if not PROXY_NAME.match(ns.name):
            raise ConfigError(f"rpc.namespaces[{i}].name: must match {PROXY_NAME.pattern}, "
                              f"got {ns.name!r}")
        if ns.name in seen:
            raise ConfigError(f"rpc.namespaces[{i}].name: duplicate namespace {ns.name!r}")
        seen.add(ns.name)
        rpc_spaces.append((f"rpc.namespaces[{i}]", ns))
    for path, rpc_options in rpc_spaces:
        if rpc_options.proxy_name not in known:
            raise ConfigError(f"{path}.proxy_name: no proxy named {rpc_options.proxy_name!r} "
                              "(define it in proxies)")
    if rpc.ping.enabled and not rpc.ping.method:
        raise ConfigError("rpc.ping.method: required when rpc.ping.enabled")


def _check_channel_refs(path: str, options: ChannelOptions, known: set[str]) -> None:
    for _, _, name_field in CHANNEL_EVENTS:
        name = getattr(options, name_field)
        if name not in known:
            raise ConfigError(f"{path}.{name_field}: no proxy named {name!r} "
                              "(define it in proxies)")
