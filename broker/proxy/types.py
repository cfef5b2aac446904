"""What Chorus asks the application, and what the application answers.

One set of dataclasses serves both backends: an HTTP proxy gets the request as
Centrifugo v6's JSON (``broker.proxy.codec``) and its JSON answer is decoded into the
result dataclasses; an in-process hook (``@chorus.on_connect`` ...) gets the request
dataclass and returns a result dataclass, a dict in the proxy's JSON shape, or None.

An answer is one of: a result (allow, with what it says), ``None`` (no result: what that
means depends on the event, as in Centrifugo), a ``ProxyError`` (the command is answered
with that error) or a ``ProxyDisconnect`` (the connection is closed with that code).
Hooks may return or raise the last two. Anything else going wrong on the way (timeout,
refused connection, non-200 status, a backend whose breaker is open, too many calls in
flight) is a ``ProxyFailure``: the client gets error 100 (internal, temporary), exactly as
Centrifugo answers a failed proxy call.

Payloads (``data``, ``info``, ``meta``) are bytes: raw JSON for JSON clients, anything for
protobuf clients (proxies then need ``binary_encoding``). A hook may give a result's
payload as any JSON-serialisable value instead; it is encoded with orjson.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.protocol import codes

KINDS = ("connect", "refresh", "subscribe", "publish", "sub_refresh", "rpc")


class ProxyError(Exception):
    """The application refuses the command with a protocol error (``{"error": ...}``)."""

    def __init__(self, code: int, message: str = "", temporary: bool = False) -> None:
        super().__init__(f"{code} {message}")
        self.code, self.message, self.temporary = code, message, temporary

    def to_code(self) -> codes.ErrorCode:
        return codes.ErrorCode(self.code, self.message, self.temporary)


class ProxyDisconnect(Exception):
    """The application closes the connection (``{"disconnect": {"code", "reason"}}``)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"{code} {reason}")
        self.code, self.reason = code, reason

    def to_code(self) -> codes.DisconnectCode:
        return codes.DisconnectCode.of(self.code, self.reason)


class ProxyFailure(Exception):
    """The application could not be asked or did not answer usably (-> error 100).
    ``reason`` is a short metrics label: timeout, connection, status, response,
    breaker_open, overloaded, encoding, hook."""

    reason = "failure"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


# --- requests ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Request:
    """Common to every request. ``headers``: what an HTTP proxy of this event would be
    sent as HTTP headers (static, emulated and transport ones, per its config)."""

    client: str
    transport: str
    protocol: str  # "json" | "protobuf"
    headers: Mapping[str, str]


@dataclass(slots=True)
class ConnectRequest(Request):
    """What the connect proxy or hook is asked."""

    data: bytes | None = None
    name: str = ""
    version: str = ""
    channels: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RefreshRequest(Request):
    """What the refresh proxy or hook is asked."""

    user: str = ""
    meta: bytes | None = None


@dataclass(slots=True)
class SubscribeRequest(Request):
    """What the subscribe proxy or hook is asked."""

    user: str = ""
    channel: str = ""
    token: str = ""
    data: bytes | None = None
    meta: bytes | None = None


@dataclass(slots=True)
class PublishRequest(Request):
    """What the publish proxy or hook is asked."""

    user: str = ""
    channel: str = ""
    data: bytes | None = None
    meta: bytes | None = None


@dataclass(slots=True)
class SubRefreshRequest(Request):
    """What the sub_refresh proxy or hook is asked."""

    user: str = ""
    channel: str = ""
    meta: bytes | None = None


@dataclass(slots=True)
class RpcRequest(Request):
    """What the RPC proxy or hook is asked."""

    user: str = ""
    method: str = ""
    data: bytes | None = None
    meta: bytes | None = None


# --- results ----------------------------------------------------------------------------------
@dataclass(slots=True)
class Override:
    """Per-subscription overrides of the namespace's options (None: keep the option)."""

    presence: bool | None = None
    join_leave: bool | None = None
    force_push_join_leave: bool | None = None
    force_recovery: bool | None = None
    force_positioning: bool | None = None


@dataclass(slots=True)
class SubscribeOptions:
    """A server-side subscription of a connect result's ``subs``."""

    expire_at: int = 0
    info: Any = None
    data: Any = None
    override: Override | None = None


@dataclass(slots=True)
class ConnectResult:
    """A connect proxy's or hook's answer (see README, proxies)."""

    user: str = ""
    expire_at: int = 0  # unix seconds; 0 = never
    info: Any = None
    data: Any = None  # sent to the client in the connect reply
    channels: list[str] = field(default_factory=list)  # server-side subscriptions
    subs: dict[str, SubscribeOptions] = field(default_factory=dict)
    meta: Any = None  # kept with the connection, sent where include_connection_meta


@dataclass(slots=True)
class RefreshResult:
    """A refresh proxy's or hook's answer."""

    expired: bool = False
    expire_at: int = 0
    info: Any = None
    meta: Any = None


@dataclass(slots=True)
class SubscribeResult:
    """A subscribe proxy's or hook's answer."""

    expire_at: int = 0
    info: Any = None
    data: Any = None  # sent to the client in the subscribe reply
    override: Override | None = None


@dataclass(slots=True)
class PublishResult:
    """A publish proxy's or hook's answer."""

    data: Any = None  # replaces the client's data when set
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""
    delta: bool = False


@dataclass(slots=True)
class SubRefreshResult:
    """A sub_refresh proxy's or hook's answer."""

    expired: bool = False
    expire_at: int = 0
    info: Any = None


@dataclass(slots=True)
class RpcResult:
    """An RPC proxy's or hook's answer."""

    data: Any = None


RESULTS: dict[str, type] = {
    "connect": ConnectResult, "refresh": RefreshResult, "subscribe": SubscribeResult,
    "publish": PublishResult, "sub_refresh": SubRefreshResult, "rpc": RpcResult,
}
