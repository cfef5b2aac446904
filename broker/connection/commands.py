"""The client commands of Centrifugo protocol v2, as methods of the connection actor.

Each handler gets the command id and its params dict, decides with the pure rules of
``connection.state``, and answers through the outbox — at once, or from an effect's
callback when the engine must be asked first. ``Denied`` raised by a rule becomes the
protocol error reply of the same name. ``connect``, ``refresh`` and ``sub_refresh`` live
in :mod:`broker.connection.connect` and are imported here into ``HANDLERS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.auth import TokenError
from broker.connection.connect import cmd_connect as cmd_connect  # in HANDLERS
from broker.connection.connect import cmd_refresh as cmd_refresh  # in HANDLERS
from broker.connection.connect import cmd_sub_refresh as cmd_sub_refresh  # in HANDLERS
from broker.connection.connect import server_refresh
from broker.connection.state import (
    Denied,
    Phase,
    Subscription,
    check_history,
    check_presence,
    check_publish,
    check_subscribe,
    is_private,
    options_for,
    publication_data_error,
    user_limited_allows,
)
from broker.connection.subscriptions import (
    resubscribe,
    server_subscribe,
    start_subscription,
    unsubscribe_push,
)
from broker.engine.base import UnrecoverablePosition
from broker.journal import record as journey
from broker.notify import RPC_METHODS as NOTIFY_RPC
from broker.protocol import codes
from broker.proxy import flows
from broker.shard.actor import Resync
from broker.types import ClientInfo
from broker.wire import client_info_dict

if TYPE_CHECKING:
    from broker.connection.actor import ConnectionActor

log = logging.getLogger("chorus.connection")

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
class ServerRefresh:
    """The server API refreshes this connection (see ``connect.server_refresh``)."""

    expired: bool
    expire_at: int
    info: bytes | None


@dataclass(slots=True)
class Resubscribe:
    """Shard ``index`` restarted empty: register this connection's channels there again."""

    index: int


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
    elif isinstance(message, ServerRefresh):
        server_refresh(conn, message.expired, message.expire_at, message.info)
    elif isinstance(message, Resync):
        # Centrifugo's "insufficient state": the SDK resubscribes from its position and
        # learns from ``recovered: false`` that publications were missed.
        sub = conn.session.subs.get(message.channel)
        if sub is not None and not sub.active:
            # Still subscribing: the SDK ignores an unsubscribe push before its reply (it
            # would time out and reconnect the whole client), so the resync follows the
            # reply (finish_subscription), as after a shard restart.
            sub.stale = True
        else:
            unsubscribe_push(conn, message.channel, 2500, "insufficient state",
                             send_leave=False)
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
