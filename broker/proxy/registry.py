"""Which backend answers which event: the node's proxies and hooks, resolved at start.

For every event the config enables — ``client.proxy.connect|refresh.enabled``, a
namespace's ``<event>_proxy_enabled``, an RPC namespace's ``proxy_enabled`` — there must be
exactly one backend: the HTTP proxy the config names (``default``: ``channel.proxy.<event>``
or ``rpc.proxy``; another name: an entry of ``proxies``), or the in-process hook
registered for that event. Conflicts are refused when the node starts, naming the key:

* an event enabled with neither an endpoint nor a hook;
* a hook registered for an event that has an HTTP endpoint too (set one or the other);
* a hook registered for an event nothing enables (a hook that would never run).

``@chorus.rpc`` handlers are not in this table: a method registered there is answered
in-process and never proxied, the way Centrifugo's built-in RPC methods win over its RPC
proxy.

Instances: one ``HttpProxy`` per configured proxy (a named proxy used by several events
shares its concurrency limit and breaker), named "client/connect", "client/refresh",
"default/<event>", "default/rpc" or by its ``proxies`` name; hooks are "hook/<event>".
The node's one aiohttp ClientSession is made on the first HTTP call and closed by
``close()`` (the app's cleanup).
"""

from __future__ import annotations

import time
from asyncio import CancelledError
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from broker.config.parse import ConfigError
from broker.config.proxy import CHANNEL_EVENTS, DEFAULT_PROXY, ProxyConfig, RpcOptions
from broker.protocol import codes
from broker.proxy.codec import Answer
from broker.proxy.hooks import HOOK_NAMES, Hook, HookBackend
from broker.proxy.http import HttpProxy
from broker.proxy.metrics import ProxyMetrics
from broker.proxy.types import ProxyFailure, Request

if TYPE_CHECKING:
    from broker.config import ChannelOptions, Config
    from broker.metrics import NodeMetrics

Backend = HttpProxy | HookBackend


class Route:
    """An event's backend and the proxy config that shapes its requests (headers, meta,
    encoding) — for a hook, the config section it stands in for."""

    __slots__ = ("backend", "config", "emulated", "static", "transport")

    def __init__(self, backend: Backend, config: ProxyConfig) -> None:
        self.backend = backend
        self.config = config
        self.static = {k.lower(): v for k, v in config.http.static_headers.items()}
        self.emulated = tuple(name.lower() for name in config.emulated_headers)
        self.transport = tuple(name.lower() for name in config.http_headers)

    def headers(self, emulated: Mapping[str, str], transport: Mapping[str, str]
                ) -> dict[str, str]:
        """Static headers, then emulated ones, then transport ones (a transport header
        wins over an emulated one of the same name, as in Centrifugo v6.9)."""
        out = dict(self.static)
        for name in self.emulated:
            value = emulated.get(name)
            if value is not None:
                out[name] = value
        for name in self.transport:
            value = transport.get(name)
            if value is not None:
                out[name] = value
        return out


# The ChannelOptions attribute names of each channel event's proxy: looked up on every
# subscribe (twice) and publish, so not formatted each time.
_OPTION_NAMES = {kind: (enabled, name) for kind, enabled, name in CHANNEL_EVENTS}


class Proxies:
    """The resolved table (see module docstring). ``connect``/``refresh`` are None when
    not enabled; ``channel(kind, options)`` and ``rpc(method)`` look the rest up."""

    def __init__(self, config: Config, hooks: Mapping[str, Hook] | None = None,
                 node_metrics: NodeMetrics | None = None) -> None:
        self.config = config
        self.hooks = dict(hooks or {})
        self.metrics = ProxyMetrics(node_metrics)
        self._session: aiohttp.ClientSession | None = None
        self._instances: dict[str, Backend] = {}
        self._channel: dict[tuple[str, str], Route] = {}
        self._rpc: dict[str, Route] = {}
        client = config.client.proxy
        self.connect = self._client_route("connect", client.connect.enabled, client.connect)
        self.refresh = self._client_route("refresh", client.refresh.enabled, client.refresh)
        self._resolve_channels()
        self._resolve_rpc()
        unknown = set(self.hooks) - set(HOOK_NAMES)
        if unknown:
            raise ConfigError(f"no such hook event(s): {', '.join(sorted(unknown))}")
        self.metrics.instances = list(self._instances.values())
        self.forwarded = frozenset(name for route in self._routes()
                                   for name in route.transport)

    # -- resolution ------------------------------------------------------------------------
    def _client_route(self, kind: str, enabled: bool, cfg: ProxyConfig) -> Route | None:
        path, hook = f"client.proxy.{kind}", self.hooks.get(kind)
        if hook is not None:
            if not enabled:
                raise ConfigError(f"{path}.enabled: false, but @chorus.{HOOK_NAMES[kind]} is "
                                  f"registered: set it to true (without an endpoint)")
            if cfg.endpoint:
                raise ConfigError(f"{path}.endpoint: set, and @chorus.{HOOK_NAMES[kind]} is "
                                  "registered: one backend per event, remove one of them")
            return Route(self._hook(kind, hook), cfg)
        if not enabled:
            return None
        if not cfg.endpoint:
            raise ConfigError(f"{path}.endpoint: required when {path}.enabled (or register "
                              f"@chorus.{HOOK_NAMES[kind]})")
        return Route(self._http(f"client/{kind}", cfg), cfg)

    def _resolve_channels(self) -> None:
        config = self.config
        spaces = [("channel.without_namespace", config.channel.without_namespace)]
        spaces += [(f"channel.namespaces[{i}]", ns.options)
                   for i, ns in enumerate(config.channel.namespaces)]
        named = {p.name: p for p in config.proxies}
        for kind, enabled_field, name_field in CHANNEL_EVENTS:
            default = getattr(config.channel.proxy, kind)
            hook = self.hooks.get(kind)
            used = False
            for path, options in spaces:
                if not getattr(options, enabled_field):
                    continue
                used = True
                name = getattr(options, name_field)
                if (kind, name) in self._channel:
                    continue
                if hook is not None:
                    if name != DEFAULT_PROXY or default.endpoint:
                        where = (f"{path}.{name_field}" if name != DEFAULT_PROXY
                                 else f"channel.proxy.{kind}.endpoint")
                        raise ConfigError(f"{where}: an HTTP proxy, and @chorus."
                                          f"{HOOK_NAMES[kind]} is registered: one backend "
                                          "per event, remove one of them")
                    self._channel[(kind, name)] = Route(self._hook(kind, hook), default)
                elif name == DEFAULT_PROXY:
                    if not default.endpoint:
                        raise ConfigError(
                            f"channel.proxy.{kind}.endpoint: required by {path}."
                            f"{enabled_field} (or register @chorus.{HOOK_NAMES[kind]})")
                    self._channel[(kind, name)] = Route(self._http(f"default/{kind}", default),
                                                        default)
                else:
                    self._channel[(kind, name)] = Route(self._http(name, named[name]),
                                                        named[name])
            if hook is not None and not used:
                raise ConfigError(f"@chorus.{HOOK_NAMES[kind]} is registered but no namespace "
                                  f"sets {enabled_field}: true (channel.without_namespace or "
                                  "channel.namespaces[])")

    def _resolve_rpc(self) -> None:
        rpc = self.config.rpc
        named = {p.name: p for p in self.config.proxies}
        spaces: list[tuple[str, RpcOptions]] = [("rpc.without_namespace",
                                                 rpc.without_namespace)]
        spaces += [(f"rpc.namespaces[{i}]", ns) for i, ns in enumerate(rpc.namespaces)]
        for path, ns in spaces:
            if not ns.proxy_enabled or ns.proxy_name in self._rpc:
                continue
            if ns.proxy_name == DEFAULT_PROXY:
                if not rpc.proxy.endpoint:
                    raise ConfigError(f"rpc.proxy.endpoint: required by {path}.proxy_enabled")
                self._rpc[DEFAULT_PROXY] = Route(self._http("default/rpc", rpc.proxy),
                                                 rpc.proxy)
            else:
                cfg = named[ns.proxy_name]
                self._rpc[ns.proxy_name] = Route(self._http(ns.proxy_name, cfg), cfg)

    def _http(self, name: str, cfg: ProxyConfig) -> Backend:
        found = self._instances.get(name)
        if found is None:
            found = self._instances[name] = HttpProxy(name, cfg, self.session)
        return found

    def _hook(self, kind: str, hook: Hook) -> Backend:
        name = f"hook/{kind}"
        found = self._instances.get(name)
        if found is None:
            found = self._instances[name] = HookBackend(kind, hook)
        return found

    def _routes(self) -> list[Route]:
        routes = [r for r in (self.connect, self.refresh) if r is not None]
        return routes + list(self._channel.values()) + list(self._rpc.values())

    # -- lookups ------------------------------------------------------------------------------
    def channel(self, kind: str, options: ChannelOptions) -> Route | None:
        """The backend of a channel event in ``options``' namespace; None if not enabled."""
        enabled, name = _OPTION_NAMES[kind]
        if not getattr(options, enabled):
            return None
        return self._channel.get((kind, getattr(options, name)))

    def rpc(self, method: str) -> Route | codes.ErrorCode:
        """The RPC backend of ``method``, or the error to answer: 104 when no RPC proxy is
        configured or the method's namespace is unknown, 108 when it does not proxy."""
        if not self._rpc:
            return codes.ERROR_METHOD_NOT_FOUND
        options = self.config.rpc.options(method)
        if options is None:
            return codes.ERROR_METHOD_NOT_FOUND
        if not options.proxy_enabled:
            return codes.ERROR_NOT_AVAILABLE
        return self._rpc[options.proxy_name]

    # -- calls --------------------------------------------------------------------------------
    async def ask(self, route: Route, kind: str, request: Request) -> Answer:
        """Call ``route``'s backend, measured. Raises ProxyFailure (see types)."""
        backend = route.backend
        started = time.perf_counter()
        try:
            answer = await backend.call(kind, request)
        except ProxyFailure as failure:
            self.metrics.observe(backend.name, kind, time.perf_counter() - started,
                                 failure.reason)
            self.metrics.log_failure(backend.name, kind, failure)
            raise
        except CancelledError:
            raise  # the client went away: neither an answer nor the backend's failure
        self.metrics.observe(backend.name, kind, time.perf_counter() - started, None)
        return answer

    def session(self) -> aiohttp.ClientSession:
        """The node's ClientSession (made on first use: it needs the running loop)."""
        if self._session is None:
            # Limits are per proxy (max_in_flight), not aiohttp's pool-wide 100.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- introspection ------------------------------------------------------------------------
    def breakers_open(self) -> int:
        return sum(1 for i in self._instances.values()
                   if isinstance(i, HttpProxy) and i.breaker.state == "open")

    def snapshot(self) -> list[dict[str, Any]]:
        """Every instance with its figures per event kind (admin API)."""
        return [{**i.snapshot(), "kinds": self.metrics.by_instance(i.name)}
                for i in self._instances.values()]
