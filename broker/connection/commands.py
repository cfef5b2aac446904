"""The client commands of Centrifugo protocol v2, as methods of the connection actor.

Each handler gets the command id and its params dict, decides with the pure rules of
``connection.state``, and answers through the outbox — at once, or from an effect's
callback when the engine must be asked first. ``Denied`` raised by a rule becomes the
protocol error reply of the same name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from broker.auth import TokenError
from broker.connection.state import (
    Denied,
    Phase,
    Subscription,
    check_history,
    check_presence,
    check_publish,
    check_subscribe,
    expiry_fields,
    is_private,
    options_for,
    publication_data_error,
    user_limited_allows,
)
from broker.connection.subscriptions import (
    Prepared,
    finish_subscription,
    gather,
    prepare_subscription,
    resubscribe,
    server_side,
    server_subscribe,
    start_subscription,
    subscription_failed,
    unsubscribe_push,
)
from broker.engine.base import UnrecoverablePosition
from broker.journal import record as journey
from broker.notify import RPC_METHODS as NOTIFY_RPC
from broker.protocol import codes
from broker.proxy import flows
from broker.proxy.types import ConnectResult
from broker.shard.actor import Resync
from broker.types import ClientInfo
from broker.wire import client_info_dict

if TYPE_CHECKING:
    from broker.connection.actor import ConnectionActor

log = logging.getLogger("chorus.connection")

T = TypeVar("T")
Handler = Callable[["ConnectionActor", int, dict[str, Any]], None]


@dataclass(slots=True)
class ServerSubscribe:
    """Subscribe this connection to a channel on the server's initiative (API, token)."""

    channel: str


@dataclass(slots=True)
class ServerUnsubscribe:
    """The server unsubscribes the connection from ``channel``."""

    channel: str


@dataclass(slots=True)
class Resubscribe:
    """Shard ``index`` restarted empty: register this connection's channels there again."""

    index: int


# -- connect ------------------------------------------------------------------------
def cmd_connect(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    """A token is verified here; without one the connect proxy or ``@chorus.on_connect``
    is asked when configured (broker.proxy.flows), else the connection is anonymous where
    allowed. Either way ``complete_connect`` finishes with the credentials."""
    session, config = conn.session, conn.config
    if session.phase is not Phase.NEW:
        conn.disconnect(codes.DISCONNECT_BAD_REQUEST)
        return
    token = params.get("token") or ""
    if token:
        claims = _verified(conn, conn.node.verifier.verify_connect, token, "token")
        if claims is None:
            return
        if not claims.user and config.client.disallow_anonymous_connection_tokens:
            conn.last_error = "connection token without a user (client." \
                "disallow_anonymous_connection_tokens)"
            conn.disconnect(codes.DISCONNECT_PERMISSION_DENIED)
            return
        credentials = ConnectResult(claims.user, claims.expire_at or 0, claims.info,
                                    channels=list(claims.channels))
    elif conn.node.proxies.connect is not None:
        flows.connect(conn, cmd_id, params, conn.node.proxies.connect,
                      lambda result: complete_connect(conn, cmd_id, params, result))
        return
    elif not (config.client.insecure or config.client.allow_anonymous_connect_without_token):
        conn.last_error = "connect without token"
        conn.disconnect(codes.DISCONNECT_INVALID_TOKEN)
        return
    else:
        credentials = ConnectResult()
    complete_connect(conn, cmd_id, params, credentials)


def complete_connect(conn: ConnectionActor, cmd_id: int, params: dict[str, Any],
                     credentials: ConnectResult) -> None:
    """Authenticated as ``credentials`` (from a token, a proxy or a hook): admit, answer,
    subscribe the server-side channels."""
    session, config = conn.session, conn.config
    session.user, session.info = credentials.user, flows.payload(credentials.info)
    session.expire_at = credentials.expire_at or None
    session.meta = flows.payload(credentials.meta)
    session.server_refresh = conn.node.proxies.refresh is not None
    refusal = conn.node.admit(session.user)
    if refusal is not None:
        conn.disconnect(refusal)
        return
    if conn.node.single_connection and session.user:
        # Before this connection is registered, so it is not among those told to go.
        conn.node.user_command("disconnect", session.user,
                               code=codes.DISCONNECT_CONNECTION_LIMIT.code,
                               reason=codes.DISCONNECT_CONNECTION_LIMIT.reason)
    session.phase = Phase.CONNECTED
    session.name = str(params.get("name", ""))
    session.version = str(params.get("version", ""))
    headers = params.get("headers")
    if isinstance(headers, dict):  # the codecs give a map of strings
        session.headers = {str(k).lower(): str(v) for k, v in headers.items()}
    conn.node.connection_authenticated(conn)
    journey.connected(conn)
    result: dict[str, Any] = {"client": session.client_id, "version": "chorus",
                              "ping": int(config.client.ping_interval)}
    if conn.expects_pong:
        result["pong"] = True
    if conn.session_id:  # emulation and uni sessions, as Centrifugo
        result["session"] = conn.session_id
        if conn.link.emulation:  # where its /emulation requests must reach
            result["node"] = conn.node.uid
    if not session.server_refresh:  # else the refresh proxy renews it, not the SDK
        result.update(expiry_fields(session.expire_at))
    data = flows.payload(credentials.data)
    if data is not None:
        result["data"] = data
    if config.client.connect_include_server_time:
        result["time"] = int(time.time() * 1000)
    conn.schedule_expiry()
    conn.start_timers()
    wanted = params.get("subs")
    recovery = wanted if isinstance(wanted, dict) else {}
    subs = [sub for channel in dict.fromkeys((*credentials.channels, *credentials.subs,
                                              *conn.node.personal_channels(session.user)))
            if (sub := _server_side(conn, channel, credentials)) is not None]
    prepared = [prepare_subscription(conn, sub, recovery.get(sub.channel) or {})
                for sub in subs]
    if all(isinstance(p, tuple) for p in prepared):
        _answer_connect(conn, cmd_id, result, subs, prepared)  # type: ignore[arg-type]
        return
    conn.run_effect(
        gather(prepared),
        on_result=lambda ready: _answer_connect(conn, cmd_id, result, subs, ready),
        on_error=lambda error: subscription_failed(conn, subs[0], error))


def _server_side(conn: ConnectionActor, channel: str, credentials: ConnectResult
                 ) -> Subscription | None:
    """A connect-time subscription, with what a connect proxy's ``subs`` gave it."""
    sub = server_side(conn, channel)
    extra = credentials.subs.get(channel)
    if sub is not None and extra is not None:
        sub.options = flows.overridden(sub.options, extra.override, proxied=False)
        sub.info, sub.data = flows.payload(extra.info), flows.payload(extra.data)
    return sub


def _answer_connect(conn: ConnectionActor, cmd_id: int, result: dict[str, Any],
                    subs: list[Subscription], ready: list[Prepared]) -> None:
    """The connect reply carries the server-side subscriptions (Centrifugo's ``subs``),
    so the SDK recovers them like its own; they go live only after the reply."""
    if subs:
        result["subs"] = {sub.channel: sub_result for sub, (sub_result, _) in zip(
            subs, ready, strict=True)}
    conn.answer_connect(cmd_id, result)
    for sub, (_, offset) in zip(subs, ready, strict=True):
        finish_subscription(conn, sub, lambda _: None, {}, offset)
    _deliver_unread(conn)
    conn.release_held()  # commands sent behind a proxied connect


# -- subscribe ------------------------------------------------------------------------
def cmd_subscribe(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    channel = str(params.get("channel", ""))
    options = options_for(conn.config, channel)
    sub = Subscription(channel, options)
    token = params.get("token")
    route = None if token else conn.node.proxies.channel("subscribe", options)
    if route is not None and not is_private(conn.config, channel) and not (
            options.allow_user_limited_channels
            and user_limited_allows(conn.config, channel, conn.session.user) is not None):
        # Centrifugo: the application decides (no token; not private; not user-limited).
        check_subscribe(conn.config, conn.session, channel, options, True)  # 105, 106
        flows.subscribe(conn, cmd_id, params, sub, route, lambda ready: start_subscription(
            conn, ready, params, lambda result: conn.answer(cmd_id, "subscribe", result),
            lambda error: conn.reply_error(cmd_id, error)))
        return
    if token:
        try:
            claims = conn.node.verifier.verify_subscribe(str(token))
        except TokenError as error:
            if error.expired:
                raise Denied(codes.ERROR_TOKEN_EXPIRED) from None
            # Centrifugo refuses the subscription (103), it does not drop the connection.
            conn.last_error = f"invalid subscription token: {error}"
            raise Denied(codes.ERROR_PERMISSION_DENIED) from None
        if claims.channel != channel or claims.user != conn.session.user:
            raise Denied(codes.ERROR_PERMISSION_DENIED)
        sub.info, sub.expire_at = claims.info, claims.expire_at
    check_subscribe(conn.config, conn.session, channel, options, bool(token))
    sub.server_refresh = conn.node.proxies.channel("sub_refresh", options) is not None
    start_subscription(conn, sub, params,
                       lambda result: conn.answer(cmd_id, "subscribe", result),
                       lambda error: conn.reply_error(cmd_id, error))


# -- the other commands ----------------------------------------------------------------
def cmd_unsubscribe(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    channel = str(params.get("channel", ""))
    if channel in conn.session.subs:
        journey.record(conn, "unsubscribe", channel=channel, code=0, reason="client")
    conn._drop_subscription(channel, send_leave=True)
    conn.answer(cmd_id, "unsubscribe", {})


def cmd_publish(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    channel = str(params.get("channel", ""))
    options = options_for(conn.config, channel)
    route = conn.node.proxies.channel("publish", options)
    if route is None:  # with a publish proxy, the application decides who may publish
        check_publish(conn.config, conn.session, channel, options)
    data = params.get("data") or b""
    problem = publication_data_error(data, options.publication_data_format)
    if problem is not None:
        conn.last_error = f"publish to {channel}: {problem}"
        raise Denied(codes.ERROR_BAD_REQUEST)
    if route is not None:
        flows.publish(conn, cmd_id, channel, data, route)
        return
    sub = conn.session.subs.get(channel)
    conn.run_effect(
        conn.node.publish(channel, data, info=conn.client_info(sub)),
        on_result=lambda _: conn.answer(cmd_id, "publish", {}),
        on_error=lambda error: _engine_failed(conn, cmd_id, error))


def cmd_presence(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    channel = str(params.get("channel", ""))
    check_presence(conn.config, conn.session, channel, options_for(conn.config, channel))

    def done(presence: dict[str, ClientInfo]) -> None:
        conn.answer(cmd_id, "presence", {"presence": {
            cid: client_info_dict(info) for cid, info in presence.items()}})

    conn.run_effect(conn.node.engine.presence(channel), on_result=done,
                    on_error=lambda error: _engine_failed(conn, cmd_id, error))


def cmd_presence_stats(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    channel = str(params.get("channel", ""))
    check_presence(conn.config, conn.session, channel, options_for(conn.config, channel))
    conn.run_effect(
        conn.node.engine.presence_stats(channel),
        on_result=lambda stats: conn.answer(cmd_id, "presence_stats", {
            "num_clients": stats[0], "num_users": stats[1]}),
        on_error=lambda error: _engine_failed(conn, cmd_id, error))


def cmd_history(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    channel = str(params.get("channel", ""))
    options = options_for(conn.config, channel)
    check_history(conn.config, conn.session, channel, options)
    since = params.get("since")
    conn.run_effect(
        conn.node.history(channel, options, limit=int(params.get("limit", 0)),
                          since=since if isinstance(since, dict) else None,
                          reverse=bool(params.get("reverse"))),
        on_result=lambda result: conn.answer(cmd_id, "history", result),
        on_error=lambda error: _history_failed(conn, cmd_id, error))


def _history_failed(conn: ConnectionActor, cmd_id: int, error: BaseException) -> None:
    if isinstance(error, UnrecoverablePosition):
        conn.reply_error(cmd_id, codes.ERROR_UNRECOVERABLE_POSITION)
    else:
        _engine_failed(conn, cmd_id, error)


def cmd_ping(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    conn.answer(cmd_id, "ping", {})


def cmd_send(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    conn.node.on_client_message(conn.session.user, conn.session.client_id,
                                params.get("data") or b"null")


def cmd_rpc(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    method = str(params.get("method", ""))
    notifier = conn.node.notifier
    if method in NOTIFY_RPC and notifier is not None:  # built in, before user handlers
        conn.run_effect(
            notifier.rpc(method, conn.session.user, params.get("data") or b"null"),
            on_result=lambda data: conn.answer(cmd_id, "rpc", {"data": data}),
            on_error=lambda error: _notify_rpc_failed(conn, cmd_id, error))
        return
    handler = conn.node.rpc_handlers.get(method)
    if handler is None:  # @chorus.rpc methods win over the RPC proxy, as built-ins do
        ping = conn.config.rpc.ping
        if ping.enabled and method == ping.method:
            conn.answer(cmd_id, "rpc", {})
            return
        route = conn.node.proxies.rpc(method)
        if isinstance(route, codes.ErrorCode):
            raise Denied(route)
        flows.rpc(conn, cmd_id, method, params.get("data") or b"", route)
        return
    conn.run_effect(
        handler(_rpc_context(conn), params.get("data") or b"null"),
        on_result=lambda data: conn.answer(cmd_id, "rpc", {"data": data}),
        on_error=lambda error: _engine_failed(conn, cmd_id, error))


def _notify_rpc_failed(conn: ConnectionActor, cmd_id: int, error: BaseException) -> None:
    if isinstance(error, ValueError):
        conn.reply_error(cmd_id, codes.ERROR_BAD_REQUEST)
    else:
        _engine_failed(conn, cmd_id, error)


def _deliver_unread(conn: ConnectionActor) -> None:
    """After connect: the user's unread notifications as publications of their personal
    channel, to this connection only (see broker.notify)."""
    notifier, user = conn.node.notifier, conn.session.user
    if notifier is None or not user:
        return
    channel = notifier.personal_channel(user)
    if channel not in conn.session.subs:
        return

    def write(frames: list[bytes]) -> None:
        if channel in conn.session.subs:
            for data in frames:
                conn.write({"push": {"channel": channel, "pub": {"data": data}}})

    conn.run_effect(notifier.unread_frames(user), on_result=write,
                    on_error=lambda error: log.warning("unread notifications of %s: %r",
                                                       user, error))


def cmd_refresh(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    if conn.session.server_refresh:  # the refresh proxy renews this connection
        conn.last_error = "refresh command, but the server refreshes this connection"
        conn.disconnect(codes.DISCONNECT_BAD_REQUEST)
        return
    claims = _verified(conn, conn.node.verifier.verify_connect, str(params.get("token", "")),
                       "refresh token")
    if claims is None:
        return
    if claims.user != conn.session.user:
        conn.disconnect(codes.DISCONNECT_INVALID_TOKEN)
        return
    conn.session.expire_at = claims.expire_at or None
    conn.session.info = claims.info if claims.info is not None else conn.session.info
    if conn.session.expire_at:
        conn.schedule_expiry()
    journey.record(conn, "refresh", by="client", expire_at=conn.session.expire_at or 0)
    conn.answer(cmd_id, "refresh", {"client": conn.session.client_id, "version": "chorus",
                                    **expiry_fields(conn.session.expire_at)})


def cmd_sub_refresh(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    channel = str(params.get("channel", ""))
    sub = conn.session.subs.get(channel)
    if sub is None:
        raise Denied(codes.ERROR_PERMISSION_DENIED)
    if sub.server_refresh:  # the sub_refresh proxy renews this subscription
        conn.last_error = f"sub_refresh command for {channel}, refreshed by the server"
        conn.disconnect(codes.DISCONNECT_BAD_REQUEST)
        return
    claims = _verified(conn, conn.node.verifier.verify_subscribe,
                       str(params.get("token", "")), "subscription refresh token")
    if claims is None:
        return
    if claims.channel != channel or claims.user != conn.session.user:
        conn.disconnect(codes.DISCONNECT_INVALID_TOKEN)
        return
    sub.expire_at = claims.expire_at
    conn.watch_subscription_expiry(sub)
    conn.answer(cmd_id, "sub_refresh", expiry_fields(sub.expire_at))


def _verified(conn: ConnectionActor, verify: Callable[[str], T], token: str, what: str
              ) -> T | None:
    """The token's claims. Error handling: an expired token raises Denied (109: the SDK
    fetches a new one); an invalid one closes the connection with 3500 and gives None."""
    try:
        return verify(token)
    except TokenError as error:
        if error.expired:
            raise Denied(codes.ERROR_TOKEN_EXPIRED) from None
        conn.last_error = f"invalid {what}: {error}"
        conn.disconnect(codes.DISCONNECT_INVALID_TOKEN)
        return None


def _engine_failed(conn: ConnectionActor, cmd_id: int, error: BaseException) -> None:
    log.warning("command %d of %s failed: %r", cmd_id, conn.session.client_id, error)
    conn.last_error = repr(error)
    conn.reply_error(cmd_id, codes.ERROR_INTERNAL)


# -- node-initiated ------------------------------------------------------------------------
def handle_internal(conn: ConnectionActor, message: Any) -> Any:
    if isinstance(message, ServerSubscribe):
        if conn.session.phase is Phase.CONNECTED:
            server_subscribe(conn, message.channel, {})
    elif isinstance(message, ServerUnsubscribe):
        unsubscribe_push(conn, message.channel, 2000, "server unsubscribe", send_leave=True)
    elif isinstance(message, Resync):
        # Centrifugo's "insufficient state": the SDK resubscribes from its position and
        # learns from ``recovered: false`` that publications were missed.
        unsubscribe_push(conn, message.channel, 2500, "insufficient state", send_leave=False)
    elif isinstance(message, Resubscribe):
        resubscribe(conn, message.index)
    else:
        raise TypeError(f"connection got an unexpected message: {message!r}")
    return None


def _rpc_context(conn: ConnectionActor) -> dict[str, Any]:
    """What an ``@chorus.rpc`` handler learns of its caller; ``headers`` is a copy, so a
    handler cannot change the session's."""
    session = conn.session
    return {"user": session.user, "client": session.client_id, "info": session.info,
            "headers": dict(session.headers)}


HANDLERS: dict[str, Handler] = {
    name[len("cmd_"):]: function
    for name, function in list(globals().items()) if name.startswith("cmd_")
}
