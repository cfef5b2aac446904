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
from typing import TYPE_CHECKING, Any, ClassVar

from broker.auth import TokenError
from broker.connection.state import (
    Denied,
    Phase,
    Subscription,
    check_history,
    check_presence,
    check_publish,
    check_subscribe,
    options_for,
)
from broker.engine.base import UnrecoverablePosition
from broker.protocol import codes
from broker.shard.actor import Activate, Subscribe
from broker.types import ClientInfo, Publication, StreamPosition
from broker.wire import client_info_dict, publication_dict

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
    channel: str


@dataclass(slots=True)
class Resubscribe:
    """Shard ``index`` restarted empty: register this connection's channels there again."""

    index: int


class CommandHandlers:
    HANDLERS: ClassVar[dict[str, Handler]] = {}

    # -- connect ------------------------------------------------------------------------
    def _cmd_connect(self: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
        session, config = self.session, self.config
        if session.phase is not Phase.NEW:
            self.disconnect(codes.DISCONNECT_BAD_REQUEST)
            return
        token = params.get("token") or ""
        channels: tuple[str, ...] = ()
        if token:
            try:
                claims = self.node.verifier.verify_connect(token)
            except TokenError as error:
                if error.expired:
                    self.reply_error(cmd_id, codes.ERROR_TOKEN_EXPIRED)
                else:
                    self.last_error = f"invalid token: {error}"
                    self.disconnect(codes.DISCONNECT_INVALID_TOKEN)
                return
            session.user, session.info = claims.user, claims.info
            session.expire_at = claims.expire_at or None
            channels = claims.channels
        elif not (config.client.insecure or config.client.allow_anonymous_connect_without_token):
            self.last_error = "connect without token"
            self.disconnect(codes.DISCONNECT_INVALID_TOKEN)
            return
        refusal = self.node.admit(session.user)
        if refusal is not None:
            self.disconnect(refusal)
            return
        session.phase = Phase.CONNECTED
        session.name = str(params.get("name", ""))
        session.version = str(params.get("version", ""))
        self.node.connection_authenticated(self)
        result: dict[str, Any] = {"client": session.client_id, "version": "chorus",
                                  "ping": int(config.client.ping_interval), "pong": True}
        if session.expire_at:
            result["expires"] = True
            result["ttl"] = max(1, int(session.expire_at - time.time()))
        if config.client.connect_include_server_time:
            result["time"] = int(time.time() * 1000)
        self.answer(cmd_id, "connect", result)
        self.schedule_expiry()
        self.start_pinging()
        for channel in (*channels, *self.node.personal_channels(session.user)):
            self._server_subscribe(channel, params.get("subs", {}).get(channel, {}))

    # -- subscribe ------------------------------------------------------------------------
    def _cmd_subscribe(self: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
        channel = str(params.get("channel", ""))
        options = options_for(self.config, channel)
        sub = Subscription(channel, options)
        token = params.get("token")
        if token:
            try:
                claims = self.node.verifier.verify_subscribe(str(token))
            except TokenError as error:
                if error.expired:
                    raise Denied(codes.ERROR_TOKEN_EXPIRED) from None
                self.last_error = f"invalid subscription token: {error}"
                self.disconnect(codes.DISCONNECT_INVALID_TOKEN)
                return
            if claims.channel != channel or claims.user != self.session.user:
                self.disconnect(codes.DISCONNECT_INVALID_TOKEN)
                return
            sub.info, sub.expire_at = claims.info, claims.expire_at
        check_subscribe(self.config, self.session, channel, options, bool(token))
        self._start_subscription(sub, params, lambda result: self.answer(
            cmd_id, "subscribe", result))

    def _server_subscribe(self: ConnectionActor, channel: str, params: dict[str, Any]) -> None:
        options = self.config.channel_options(channel)
        if options is None or channel in self.session.subs:
            return
        sub = Subscription(channel, options, server_side=True)
        self._start_subscription(sub, params, lambda result: self.write(
            {"push": {"channel": channel, "subscribe": result}}))

    def _start_subscription(self: ConnectionActor, sub: Subscription, params: dict[str, Any],
                            send_result: Callable[[dict[str, Any]], None]) -> None:
        options, channel = sub.options, sub.channel
        self.session.subs[channel] = sub
        join_leave = bool(params.get("join_leave")) or options.force_push_join_leave
        self.node.tell_shard(channel, Subscribe(channel, self.session.client_id, self.outbox,
                                                self.codec.binary, join_leave))
        if options.presence:
            self.node.spawn(self.node.engine.add_presence(
                channel, self.session.client_id, self.client_info(sub),
                self.config.client.presence_update_interval * 3))
        if options.history_size <= 0 or options.history_ttl <= 0:
            self._finish_subscription(sub, send_result, {}, 0)
            return
        sub.recoverable = options.force_recovery or options.allow_recovery
        recovering = sub.recoverable and bool(params.get("recover"))
        since = None
        if recovering:
            since = StreamPosition(int(params.get("offset", 0)), str(params.get("epoch", "")))
        limit = self.config.client.recovery_max_publication_limit if recovering else 0

        def done(outcome: tuple[list[Publication], StreamPosition, bool]) -> None:
            pubs, top, recovered = outcome
            result: dict[str, Any] = {"epoch": top.epoch, "offset": top.offset,
                                      "positioned": True}
            if sub.recoverable:
                result["recoverable"] = True
            if recovering:
                result["was_recovering"] = True
                result["recovered"] = recovered
                result["publications"] = [publication_dict(p) for p in pubs]
            self._finish_subscription(sub, send_result, result, top.offset)

        self.run_effect(self.node.recover(channel, since, limit, options), on_result=done,
                        on_error=lambda error: self._subscription_failed(sub, error))

    def _finish_subscription(self: ConnectionActor, sub: Subscription,
                             send_result: Callable[[dict[str, Any]], None],
                             result: dict[str, Any], after_offset: int) -> None:
        if self.session.subs.get(sub.channel) is not sub:
            return  # unsubscribed while the engine answered
        send_result(result)
        sub.active = True
        self.node.tell_shard(sub.channel, Activate(sub.channel, self.session.client_id,
                                                   after_offset))
        if sub.options.join_leave:
            self.node.join_leave(sub.channel, self.client_info(sub), join=True)

    def _subscription_failed(self: ConnectionActor, sub: Subscription,
                             error: BaseException) -> None:
        log.warning("subscribe to %s failed: %r", sub.channel, error)
        self._drop_subscription(sub.channel, send_leave=False)
        self.last_error = f"engine: {error!r}"
        self.disconnect(codes.DISCONNECT_SERVER_ERROR)

    def client_info(self: ConnectionActor, sub: Subscription | None = None) -> ClientInfo:
        return ClientInfo(self.session.user, self.session.client_id, self.session.info,
                          sub.info if sub is not None else None)

    # -- the other commands ----------------------------------------------------------------
    def _cmd_unsubscribe(self: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
        self._drop_subscription(str(params.get("channel", "")), send_leave=True)
        self.answer(cmd_id, "unsubscribe", {})

    def _cmd_publish(self: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
        channel = str(params.get("channel", ""))
        options = options_for(self.config, channel)
        check_publish(self.config, self.session, channel, options)
        sub = self.session.subs.get(channel)
        self.run_effect(
            self.node.publish(channel, params.get("data") or b"null",
                              info=self.client_info(sub)),
            on_result=lambda _: self.answer(cmd_id, "publish", {}),
            on_error=lambda error: self._engine_failed(cmd_id, error))

    def _cmd_presence(self: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
        channel = str(params.get("channel", ""))
        check_presence(self.config, self.session, channel, options_for(self.config, channel))

        def done(presence: dict[str, ClientInfo]) -> None:
            self.answer(cmd_id, "presence", {"presence": {
                cid: client_info_dict(info) for cid, info in presence.items()}})

        self.run_effect(self.node.engine.presence(channel), on_result=done,
                        on_error=lambda error: self._engine_failed(cmd_id, error))

    def _cmd_presence_stats(self: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
        channel = str(params.get("channel", ""))
        check_presence(self.config, self.session, channel, options_for(self.config, channel))
        self.run_effect(
            self.node.engine.presence_stats(channel),
            on_result=lambda stats: self.answer(cmd_id, "presence_stats", {
                "num_clients": stats[0], "num_users": stats[1]}),
            on_error=lambda error: self._engine_failed(cmd_id, error))

    def _cmd_history(self: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
        channel = str(params.get("channel", ""))
        options = options_for(self.config, channel)
        check_history(self.config, self.session, channel, options)
        since = params.get("since")
        self.run_effect(
            self.node.history(channel, options, limit=int(params.get("limit", 0)),
                              since=since if isinstance(since, dict) else None,
                              reverse=bool(params.get("reverse"))),
            on_result=lambda result: self.answer(cmd_id, "history", result),
            on_error=lambda error: self._history_failed(cmd_id, error))

    def _history_failed(self: ConnectionActor, cmd_id: int, error: BaseException) -> None:
        if isinstance(error, UnrecoverablePosition):
            self.reply_error(cmd_id, codes.ERROR_UNRECOVERABLE_POSITION)
        else:
            self._engine_failed(cmd_id, error)

    def _cmd_ping(self: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
        self.answer(cmd_id, "ping", {})

    def _cmd_send(self: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
        self.node.on_client_message(self.session.user, self.session.client_id,
                                    params.get("data") or b"null")

    def _cmd_rpc(self: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
        method = str(params.get("method", ""))
        handler = self.node.rpc_handlers.get(method)
        if handler is None:
            raise Denied(codes.ERROR_METHOD_NOT_FOUND)
        self.run_effect(
            handler(self.rpc_context(), params.get("data") or b"null"),
            on_result=lambda data: self.answer(cmd_id, "rpc", {"data": data}),
            on_error=lambda error: self._engine_failed(cmd_id, error))

    def _cmd_refresh(self: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
        try:
            claims = self.node.verifier.verify_connect(str(params.get("token", "")))
        except TokenError as error:
            if error.expired:
                raise Denied(codes.ERROR_TOKEN_EXPIRED) from None
            self.disconnect(codes.DISCONNECT_INVALID_TOKEN)
            return
        if claims.user != self.session.user:
            self.disconnect(codes.DISCONNECT_INVALID_TOKEN)
            return
        self.session.expire_at = claims.expire_at or None
        self.session.info = claims.info if claims.info is not None else self.session.info
        result: dict[str, Any] = {"client": self.session.client_id, "version": "chorus"}
        if self.session.expire_at:
            result["expires"] = True
            result["ttl"] = max(1, int(self.session.expire_at - time.time()))
            self.schedule_expiry()
        self.answer(cmd_id, "refresh", result)

    def _cmd_sub_refresh(self: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
        channel = str(params.get("channel", ""))
        sub = self.session.subs.get(channel)
        if sub is None:
            raise Denied(codes.ERROR_PERMISSION_DENIED)
        try:
            claims = self.node.verifier.verify_subscribe(str(params.get("token", "")))
        except TokenError as error:
            if error.expired:
                raise Denied(codes.ERROR_TOKEN_EXPIRED) from None
            self.disconnect(codes.DISCONNECT_INVALID_TOKEN)
            return
        if claims.channel != channel or claims.user != self.session.user:
            self.disconnect(codes.DISCONNECT_INVALID_TOKEN)
            return
        sub.expire_at = claims.expire_at
        result: dict[str, Any] = {}
        if sub.expire_at:
            result = {"expires": True, "ttl": max(1, int(sub.expire_at - time.time()))}
        self.answer(cmd_id, "sub_refresh", result)

    def _engine_failed(self: ConnectionActor, cmd_id: int, error: BaseException) -> None:
        log.warning("command %d of %s failed: %r", cmd_id, self.session.client_id, error)
        self.last_error = repr(error)
        self.reply_error(cmd_id, codes.ERROR_INTERNAL)

    # -- node-initiated ------------------------------------------------------------------------
    def handle_internal(self: ConnectionActor, message: Any) -> Any:
        if isinstance(message, ServerSubscribe):
            if self.session.phase is Phase.CONNECTED:
                self._server_subscribe(message.channel, {})
        elif isinstance(message, ServerUnsubscribe):
            if message.channel in self.session.subs:
                self._drop_subscription(message.channel, send_leave=True)
                self.write({"push": {"channel": message.channel,
                                     "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}})
        elif isinstance(message, Resubscribe):
            self._resubscribe(message.index)
        else:
            raise TypeError(f"connection got an unexpected message: {message!r}")
        return None

    def _resubscribe(self: ConnectionActor, index: int) -> None:
        for channel, sub in self.session.subs.items():
            if sub.active and self.node.shard_of(channel) == index:
                self.node.tell_shard(channel, Subscribe(channel, self.session.client_id,
                                                        self.outbox, self.codec.binary, False))
                self.node.tell_shard(channel, Activate(channel, self.session.client_id, 0))

    def rpc_context(self: ConnectionActor) -> dict[str, Any]:
        return {"user": self.session.user, "client": self.session.client_id,
                "info": self.session.info}


CommandHandlers.HANDLERS = {
    name[len("_cmd_"):]: getattr(CommandHandlers, name)
    for name in dir(CommandHandlers) if name.startswith("_cmd_")
}
