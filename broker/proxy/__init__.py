"""Event proxies and in-process hooks: the application's backend in the loop.

``from broker.proxy import ConnectResult, ProxyError, ...`` gives what a hook receives
and returns (``broker.proxy.types``). The rest: ``codec`` (Centrifugo v6's proxy JSON),
``http`` (one HTTP proxy: timeout, concurrency bound, breaker), ``breaker``, ``hooks``,
``registry`` (which backend answers which event), ``flows`` (the connection actor's side)
and ``metrics``.
"""

from broker.proxy.types import (
    ConnectRequest,
    ConnectResult,
    Override,
    ProxyDisconnect,
    ProxyError,
    ProxyFailure,
    PublishRequest,
    PublishResult,
    RefreshRequest,
    RefreshResult,
    RpcRequest,
    RpcResult,
    SubRefreshRequest,
    SubRefreshResult,
    SubscribeOptions,
    SubscribeRequest,
    SubscribeResult,
)

__all__ = [
    "ConnectRequest",
    "ConnectResult",
    "Override",
    "ProxyDisconnect",
    "ProxyError",
    "ProxyFailure",
    "PublishRequest",
    "PublishResult",
    "RefreshRequest",
    "RefreshResult",
    "RpcRequest",
    "RpcResult",
    "SubRefreshRequest",
    "SubRefreshResult",
    "SubscribeOptions",
    "SubscribeRequest",
    "SubscribeResult",
]
