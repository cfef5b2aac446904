"""The connection side of proxies and hooks: build the request, run the call as an effect
of the connection actor, apply the answer — with Centrifugo v6's mapping of answers.

Every call is ``conn.run_effect(...)``: the actor never waits, other commands of other
connections carry on, and a call whose connection ends is cancelled (its answer never
applied). What each answer does, per event:

========== ============================ ============================== ===========================
event      result                       no result (None)               failure (ProxyFailure)
========== ============================ ============================== ===========================
connect    credentials, data, subs      anonymous if allowed, else     error 100 (temporary: the
                                        disconnect 3501                SDK reconnects)
refresh    new expire_at / info / meta  disconnect 3005 (expired)      60 s more, then ask again
subscribe  allow with info/data/options allow with the namespace's     error 100
publish    publish (data may be new)    publish unchanged              error 100
sub_refr.  new expire_at / info         disconnect 3006                60 s more, then ask again
rpc        ``data`` in the reply        empty reply                    error 100
========== ============================ ============================== ===========================

An error answer is the command's error reply; a disconnect answer closes the connection
with its code — except for refresh, where Centrifugo reads only the result (an error or
disconnect there is "no result": 3005). As Centrifugo, a proxied subscription is
recoverable/positioned only through ``force_recovery``/``force_positioning`` or the
result's ``override``, not through the client's own flags.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from broker.connection.state import Denied, Phase, Subscription
from broker.journal import record as journey
from broker.protocol import codes
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
    SubscribeRequest,
    SubscribeResult,
)

if TYPE_CHECKING:
    from broker.config import ChannelOptions
    from broker.connection.actor import ConnectionActor
    from broker.proxy.registry import Route

log = logging.getLogger("chorus.proxy")

RETRY_AFTER_FAILURE = 60  # seconds a refresh that failed extends the deadline (Centrifugo)
OVERRIDES = ("presence", "join_leave", "force_push_join_leave", "force_recovery",
             "force_positioning")


def payload(value: Any) -> bytes | None:
    """A result's payload as bytes: bytes as is, None as None, anything else as JSON."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return orjson.dumps(value)


def _transport(conn: ConnectionActor) -> str:
    link = getattr(conn, "link", None)  # transport-agnostic connections name their link
    return str(getattr(link, "name", "websocket"))


def _base(conn: ConnectionActor, route: Route,
          emulated: dict[str, str] | None = None) -> dict[str, Any]:
    session = conn.session
    headers = route.headers(session.headers if emulated is None else emulated,
                            session.http_headers)
    return {"client": session.client_id, "transport": _transport(conn),
            "protocol": conn.codec.name, "headers": headers}


def _meta(conn: ConnectionActor, route: Route) -> bytes | None:
    return conn.session.meta if route.config.include_connection_meta else None


def _ask(conn: ConnectionActor, route: Route, kind: str, request: Any,
         answered: Callable[[Any], None], failed: Callable[[BaseException], None]) -> None:
    conn.run_effect(conn.node.proxies.ask(route, kind, request), on_result=answered,
                    on_error=failed)


def _internal(conn: ConnectionActor, cmd_id: int, kind: str, error: BaseException) -> None:
    """A failed call (or anything unexpected on the way): error 100, as Centrifugo."""
    if not isinstance(error, ProxyFailure):
        log.warning("%s proxy call of %s failed: %r", kind, conn.session.client_id, error)
    conn.last_error = f"{kind} proxy: {error}"
    conn.reply_error(cmd_id, codes.ERROR_INTERNAL)


def _refused(conn: ConnectionActor, cmd_id: int, answer: Any) -> bool:
    """Apply an error or disconnect answer; True if ``answer`` was one."""
    if isinstance(answer, ProxyDisconnect):
        conn.last_error = f"disconnected by the application: {answer.code} {answer.reason}"
        conn.disconnect(answer.to_code())
        return True
    if isinstance(answer, ProxyError):
        conn.reply_error(cmd_id, answer.to_code())
        return True
    return False


# -- connect ----------------------------------------------------------------------------
def connect(conn: ConnectionActor, cmd_id: int, params: dict[str, Any], route: Route,
            complete: Callable[[ConnectResult], None]) -> None:
    """Ask who connects; ``complete(credentials)`` finishes the connect command."""
    conn.session.phase = Phase.CONNECTING
    raw_headers = params.get("headers")
    emulated = ({str(k).lower(): str(v) for k, v in raw_headers.items()}
                if isinstance(raw_headers, dict) else {})
    subs = params.get("subs")
    request = ConnectRequest(**_base(conn, route, emulated), data=params.get("data") or None,
                             name=str(params.get("name", "")),
                             version=str(params.get("version", "")),
                             channels=list(subs) if isinstance(subs, dict) else [])

    def answered(answer: Any) -> None:
        if _refused(conn, cmd_id, answer):
            return
        if answer is None:
            client = conn.config.client
            if not (client.insecure or client.allow_anonymous_connect_without_token):
                conn.last_error = "connect proxy gave no result (no credentials)"
                conn.disconnect(codes.DISCONNECT_BAD_REQUEST)
                return
            answer = ConnectResult()
        problem = _connect_problem(conn, answer)
        if problem is not None:
            conn.reply_error(cmd_id, problem)
            return
        complete(answer)

    _ask(conn, route, "connect", request, answered,
         lambda error: _internal(conn, cmd_id, "connect", error))


def _connect_problem(conn: ConnectionActor, result: ConnectResult) -> codes.ErrorCode | None:
    for channel in (*result.channels, *result.subs):
        if conn.config.channel_options(channel) is None:
            conn.last_error = f"connect proxy: unknown channel {channel!r} in the result"
            return codes.ERROR_UNKNOWN_CHANNEL
    if result.expire_at and result.expire_at < time.time():
        conn.last_error = "connect proxy: expire_at in the past"
        return codes.ERROR_EXPIRED
    return None


def overridden(options: ChannelOptions, override: Override | None, *,
               proxied: bool) -> ChannelOptions:
    """``options`` with a result's ``override`` applied; a proxied subscribe's client
    flags cannot ask for recovery or positioning (see module docstring)."""
    changes: dict[str, Any] = {}
    if proxied and (options.allow_recovery or options.allow_positioning):
        changes.update(allow_recovery=False, allow_positioning=False)
    if override is not None:
        changes.update({name: value for name in OVERRIDES
                        if (value := getattr(override, name)) is not None})
    return dataclasses.replace(options, **changes) if changes else options


# -- expiry --------------------------------------------------------------------------------
def connection_expired(conn: ConnectionActor) -> None:
    """The connection's ``expire_at`` passed: the refresh proxy is asked when it renews
    this connection, else the connection ends (3005)."""
    route = conn.node.proxies.refresh
    if conn.session.server_refresh and route is not None:
        refresh(conn, route)
    else:
        conn.disconnect(codes.DISCONNECT_EXPIRED)


def subscription_expired(conn: ConnectionActor, sub: Subscription) -> None:
    """``sub``'s ``expire_at`` passed (and the close delay): its sub_refresh proxy is asked
    when it has one, else the connection ends (3006)."""
    route = conn.node.proxies.channel("sub_refresh", sub.options)
    if sub.server_refresh and route is not None:
        sub_refresh(conn, sub, route)
        return
    conn.last_error = f"subscription to {sub.channel} expired"
    conn.disconnect(codes.DISCONNECT_SUB_EXPIRED)


# -- refresh (server-side, at the connection's expire_at) ----------------------------------
def refresh(conn: ConnectionActor, route: Route) -> None:
    session = conn.session
    request = RefreshRequest(**_base(conn, route), user=session.user, meta=_meta(conn, route))

    def answered(answer: Any) -> None:
        now = time.time()
        if not isinstance(answer, RefreshResult) or answer.expired or answer.expire_at <= now:
            conn.last_error = "refresh proxy: connection expired"
            conn.disconnect(codes.DISCONNECT_EXPIRED)
            return
        session.expire_at = answer.expire_at
        if answer.info is not None:
            session.info = payload(answer.info)
        if answer.meta is not None:
            session.meta = payload(answer.meta)
        conn.schedule_expiry()
        journey.record(conn, "refresh", by="proxy", expire_at=session.expire_at)

    def failed(error: BaseException) -> None:
        conn.last_error = f"refresh proxy: {error}"
        session.expire_at = int(time.time()) + RETRY_AFTER_FAILURE
        conn.schedule_expiry()

    _ask(conn, route, "refresh", request, answered, failed)


# -- subscribe ----------------------------------------------------------------------------
def subscribe(conn: ConnectionActor, cmd_id: int, params: dict[str, Any], sub: Subscription,
              route: Route, start: Callable[[Subscription], None]) -> None:
    """Ask whether ``sub`` may go ahead; ``start(sub)`` subscribes it as usual."""
    session, channel = conn.session, sub.channel
    if session.proxying is None:
        session.proxying = set()
    proxying = session.proxying
    proxying.add(channel)
    request = SubscribeRequest(**_base(conn, route), user=session.user, channel=channel,
                               data=params.get("data") or None, meta=_meta(conn, route))

    def answered(answer: Any) -> None:
        proxying.discard(channel)
        if _refused(conn, cmd_id, answer):
            return
        result = answer if isinstance(answer, SubscribeResult) else SubscribeResult()
        sub.options = overridden(sub.options, result.override, proxied=True)
        sub.info, sub.data = payload(result.info), payload(result.data)
        sub.expire_at = result.expire_at or None
        sub.server_refresh = conn.node.proxies.channel("sub_refresh", sub.options) is not None
        try:
            start(sub)
        except Denied as denied:  # refused on its own terms (a bad delta or tags filter)
            conn.reply_error(cmd_id, denied.error)

    def failed(error: BaseException) -> None:
        proxying.discard(channel)
        _internal(conn, cmd_id, "subscribe", error)

    _ask(conn, route, "subscribe", request, answered, failed)


# -- sub_refresh (server-side, at a subscription's expire_at) ------------------------------
def sub_refresh(conn: ConnectionActor, sub: Subscription, route: Route) -> None:
    session = conn.session
    request = SubRefreshRequest(**_base(conn, route), user=session.user, channel=sub.channel,
                                meta=_meta(conn, route))

    def current() -> bool:
        return session.subs.get(sub.channel) is sub

    def answered(answer: Any) -> None:
        if not current():
            return
        now = time.time()
        if not isinstance(answer, SubRefreshResult) or answer.expired or (
                answer.expire_at and answer.expire_at < now):
            conn.last_error = f"sub_refresh proxy: subscription to {sub.channel} expired"
            conn.disconnect(codes.DISCONNECT_SUB_EXPIRED)
            return
        sub.expire_at = answer.expire_at or None  # 0: the subscription no longer expires
        if answer.info is not None:
            sub.info = payload(answer.info)
        conn.watch_subscription_expiry(sub)

    def failed(error: BaseException) -> None:
        if current():
            conn.last_error = f"sub_refresh proxy: {error}"
            sub.expire_at = int(time.time()) + RETRY_AFTER_FAILURE
            conn.watch_subscription_expiry(sub)

    _ask(conn, route, "sub_refresh", request, answered, failed)


# -- publish -----------------------------------------------------------------------------
def publish(conn: ConnectionActor, cmd_id: int, channel: str, data: bytes,
            route: Route) -> None:
    session = conn.session
    request = PublishRequest(**_base(conn, route), user=session.user, channel=channel,
                             data=data, meta=_meta(conn, route))

    def answered(answer: Any) -> None:
        if _refused(conn, cmd_id, answer):
            return
        result = answer if isinstance(answer, PublishResult) else PublishResult()
        out = payload(result.data)
        if out is None:  # no new data: publish the client's
            out = data
        conn.run_effect(
            conn.node.publish(channel, out, info=conn.client_info(session.subs.get(channel)),
                              tags=result.tags, idempotency_key=result.idempotency_key or None,
                              skip_history=result.skip_history, delta=result.delta),
            on_result=lambda _: conn.answer(cmd_id, "publish", {}),
            on_error=lambda error: _internal(conn, cmd_id, "publish", error))

    _ask(conn, route, "publish", request, answered,
         lambda error: _internal(conn, cmd_id, "publish", error))


# -- rpc ---------------------------------------------------------------------------------
def rpc(conn: ConnectionActor, cmd_id: int, method: str, data: bytes, route: Route) -> None:
    session = conn.session
    request = RpcRequest(**_base(conn, route), user=session.user, method=method,
                         data=data or None, meta=_meta(conn, route))

    def answered(answer: Any) -> None:
        if _refused(conn, cmd_id, answer):
            return
        out = payload(answer.data) if isinstance(answer, RpcResult) else None
        conn.answer(cmd_id, "rpc", {"data": out} if out else {})

    _ask(conn, route, "rpc", request, answered,
         lambda error: _internal(conn, cmd_id, "rpc", error))
