"""A client session's state and the rules that judge its commands — no I/O, no loop.

The connection actor is a shell that feeds commands in and carries decisions out; what
a client may do (subscribe, publish, read presence or history) is decided here, so it is
tested without sockets.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from broker.config import ChannelOptions, Config
from broker.protocol import codes

if TYPE_CHECKING:
    from broker.shard.filters import Predicate
    from broker.shard.messages import Subscribe


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})  # shared: most sessions have none


class Phase(Enum):
    NEW = "new"  # socket open, no connect command yet
    CONNECTING = "connecting"  # the connect proxy (or hook) is being asked
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(slots=True)
class Subscription:
    """One channel the connection is subscribed to, with its options."""

    channel: str
    options: ChannelOptions
    info: bytes | None = None
    expire_at: int | None = None  # unix seconds, from a subscription token
    recoverable: bool = False
    server_side: bool = False
    active: bool = False  # the subscribe reply was written; publications flow
    join_leave: bool = False  # the client asked for (or the namespace forces) join/leave
    # Its shard restarted while it was subscribing: publications buffered there are
    # gone, so a recoverable subscription is resynced (2500) once its reply is out.
    stale: bool = False
    delta: bool = False  # fossil deltas negotiated (asked for and allowed)
    tags_filter: Predicate | None = None  # compiled from the request's ``tf``
    channel_id: int = 0  # channel compaction negotiated: the channel's id on this node
    # Subscribe flag: a recovery that cannot be complete fails with 112 (the SDK then
    # reloads its state) instead of succeeding with ``recovered: false``.
    reject_unrecovered: bool = False
    # From a subscribe proxy or hook (broker.proxy): ``data`` for the subscribe reply;
    # ``server_refresh``: at expiry the sub_refresh proxy is asked (no client token).
    data: bytes | None = None
    server_refresh: bool = False
    # Its shard's ``Subscribe``, not told yet: a subscribe answered without an engine
    # round trip registers it live in one message once the result is out
    # (``broker.connection.subscriptions``).
    held: Subscribe | None = None


@dataclass(slots=True)
class Session:
    """Who the client is once connected, and what it is subscribed to."""

    client_id: str
    phase: Phase = Phase.NEW
    user: str = ""
    info: bytes | None = None
    expire_at: int | None = None  # unix seconds; None = never
    name: str = ""
    version: str = ""
    # Headers emulation: what the SDK sent in ``connect.headers`` (browsers cannot set
    # WebSocket headers), names lower-cased. Client-controlled, never an identity.
    headers: dict[str, str] = field(default_factory=dict)
    subs: dict[str, Subscription] = field(default_factory=dict)
    # Proxies (broker.proxy): the upgrade request's headers some proxy forwards
    # (``http_headers``), the connection meta of the connect result, whether the refresh
    # proxy renews the connection (no client refresh), channels whose subscribe proxy
    # call is under way (made on first use: most connections never have one).
    http_headers: Mapping[str, str] = field(default_factory=lambda: _NO_HEADERS)
    meta: bytes | None = None
    server_refresh: bool = False
    proxying: set[str] | None = None

    @property
    def anonymous(self) -> bool:
        return self.user == ""


def expiry_fields(expire_at: int | None) -> dict[str, Any]:
    """``expires``/``ttl`` of a connect, refresh or subscribe result (none if it never
    expires); the SDKs schedule their token refresh from them."""
    if not expire_at:
        return {}
    return {"expires": True, "ttl": max(1, int(expire_at - time.time()))}


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` banked."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    @property
    def stamp(self) -> float:
        """When tokens were last added (the caller's clock)."""
        return self._stamp

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; False means over the limit."""
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._stamp = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False


class Denied(Exception):
    """A command is refused with ``error``, the protocol error to answer with."""

    def __init__(self, error: codes.ErrorCode) -> None:
        super().__init__(error.message)
        self.error = error


def is_private(config: Config, channel: str) -> bool:
    return channel.startswith(config.channel.private_prefix)


def user_limited_allows(config: Config, channel: str, user: str) -> bool | None:
    """For a ``#``-channel: whether ``user`` is one of its users; None if not one."""
    boundary = config.channel.user_boundary
    if boundary not in channel:
        return None
    users = channel.rsplit(boundary, 1)[1].split(config.channel.user_separator)
    return user != "" and user in users


def options_for(config: Config, channel: str) -> ChannelOptions:
    """Channel options for a client's subscribe, publish, presence or history.

    Error handling: Denied with 107 (empty name), 106 (longer than
    ``channel.max_length``), 102 (namespace not configured) or 107 (name not matching
    the namespace's ``channel_regex``, as Centrifugo's ``validateChannelName``).
    """
    if not channel or len(channel) > config.channel.max_length:
        raise Denied(codes.ERROR_BAD_REQUEST if not channel else codes.ERROR_LIMIT_EXCEEDED)
    options = config.channel_options(channel)
    if options is None:
        raise Denied(codes.ERROR_UNKNOWN_CHANNEL)
    if options.channel_pattern is not None and not config.channel_name_allowed(channel,
                                                                               options):
        raise Denied(codes.ERROR_BAD_REQUEST)
    return options


def check_subscribe(
    config: Config, session: Session, channel: str, options: ChannelOptions, has_token: bool
) -> None:
    """Raise Denied unless ``session`` may subscribe to ``channel`` (token checked apart).

    Rules (Centrifugo v6): a subscription token always suffices; a private (``$``)
    channel needs one; a user-limited ``#`` channel admits its listed users when the
    namespace allows it; otherwise ``allow_subscribe_for_client`` (and for anonymous
    users also ``allow_subscribe_for_anonymous``); ``client.insecure`` allows everything.
    """
    if channel in session.subs or (session.proxying and channel in session.proxying):
        raise Denied(codes.ERROR_ALREADY_SUBSCRIBED)
    limit = config.client.channel_limit
    if limit and len(session.subs) >= limit:
        raise Denied(codes.ERROR_LIMIT_EXCEEDED)
    if has_token or config.client.insecure:
        return
    if is_private(config, channel):
        raise Denied(codes.ERROR_PERMISSION_DENIED)
    limited = user_limited_allows(config, channel, session.user)
    if limited is not None and options.allow_user_limited_channels:
        if limited:
            return
        raise Denied(codes.ERROR_PERMISSION_DENIED)
    if session.anonymous and not options.allow_subscribe_for_anonymous:
        raise Denied(codes.ERROR_PERMISSION_DENIED)
    if not options.allow_subscribe_for_client:
        raise Denied(codes.ERROR_PERMISSION_DENIED)


def _allowed(
    config: Config, session: Session, channel: str, for_subscriber: bool, for_client: bool,
    for_anonymous: bool,
) -> None:
    if config.client.insecure:
        return
    if for_subscriber and channel in session.subs:
        return
    if for_client and (not session.anonymous or for_anonymous):
        return
    raise Denied(codes.ERROR_PERMISSION_DENIED)


def check_publish(config: Config, session: Session, channel: str, o: ChannelOptions) -> None:
    _allowed(config, session, channel, o.allow_publish_for_subscriber,
             o.allow_publish_for_client, o.allow_publish_for_anonymous)


def check_presence(config: Config, session: Session, channel: str, o: ChannelOptions) -> None:
    if not o.presence:
        raise Denied(codes.ERROR_NOT_AVAILABLE)
    _allowed(config, session, channel, o.allow_presence_for_subscriber,
             o.allow_presence_for_client, o.allow_presence_for_anonymous)


def check_history(config: Config, session: Session, channel: str, o: ChannelOptions) -> None:
    if o.history_size <= 0 or o.history_ttl <= 0:
        raise Denied(codes.ERROR_NOT_AVAILABLE)
    _allowed(config, session, channel, o.allow_history_for_subscriber,
             o.allow_history_for_client, o.allow_history_for_anonymous)


_JSON_SPACE = b" \t\n\r"


def publication_data_error(data: bytes, data_format: str) -> str | None:
    """Why ``data`` does not fit the namespace's ``publication_data_format``, or None.

    As Centrifugo v6: "" refuses empty data, "json" needs valid JSON (UTF-8), "json_object"
    a JSON object, "binary" takes anything, empty included. Callers answer bad request
    (107 to a client, 400 from the server API); nothing is published.
    """
    if data_format == "binary":
        return None
    if not data:
        return "data required"
    if data_format in ("json", "json_object"):
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError:
            return "data is not valid JSON"
        if data_format == "json_object" and not data.strip(_JSON_SPACE).startswith(b"{"):
            return "data is not a JSON object"
    return None
