"""Connection actor: one per client connection, the client's session on this node.

The same actor serves every transport; what differs is its ``Link`` (see
``broker.transport.link``): how replies are encoded and framed, where the outbox writes,
and how the connection is closed. The transport's reader (``broker.transport.ws`` for a
WebSocket, ``broker.transport.emulation`` for commands of an HTTP-streaming or SSE
session) turns each incoming message into a ``Frame`` told to this actor; replies and
pushes leave through the connection's ``Outbox``. Commands that need I/O (history,
presence, RPC, engine publishes) run as effects and answer when their result comes back.

Unidirectional sessions (uni_websocket, uni_sse, uni_http_stream) get one ``UniConnect``
with the connect request instead of frames: the connect result goes out as a push, an
error refusing it becomes a disconnect (Centrifugo's mapping), and nothing else is read.

Failure policy: connection actors are *temporary* children of the connection
supervisor — a crashed session is not rebuilt (the client reconnects, and recovers from
its last offset). Whether it stops or fails, the actor unsubscribes from its shards, drops
its presence and closes its socket (3004 "internal server error" after a failure, or
when it is killed because its supervisor ended: no socket outlives its actor).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from actors import Actor
from broker.connection import commands
from broker.connection.messages import (
    UNI_ERROR_DISCONNECTS,
    Disconnect,
    Frame,
    SocketClosed,
    UniConnect,
    _Expired,
    _SubExpired,
)
from broker.connection.outbox import new_outbox
from broker.connection.state import Denied, Phase, Session, Subscription, TokenBucket
from broker.journal import record as journey
from broker.protocol import ProtocolError, codes
from broker.proxy import flows
from broker.shard.actor import Unsubscribe
from broker.types import ClientInfo

if TYPE_CHECKING:
    from broker.node import Node
    from broker.transport.link import Link

log = logging.getLogger("chorus.connection")

HELD_MAX = 128  # commands a client may send before its connect is answered (proxied)


def _method(command: dict[str, Any]) -> str | None:
    """The command's first key other than ``id`` (None for a pong). A loop, not
    ``next()`` over a generator: a quarter of the cost, twice per handshake."""
    for key in command:
        if key != "id":
            return key
    return None


class ConnectionActor(Actor):
    kind = "connection"

    def __init__(self, node: Node, link: Link, remote: str, client_id: str,
                 http_headers: dict[str, str] | None = None) -> None:
        self.node = node
        self.config = node.config
        self.link = link
        self.delivery = link.delivery
        self.codec = codec = link.delivery.codec
        self.remote = remote
        self.session = Session(client_id)
        if http_headers:  # the upgrade request's headers a proxy forwards (broker.proxy)
            self.session.http_headers = http_headers
        self.connected_at = time.time()
        self.outbox = new_outbox(
            link.writer,
            node.scheduler,
            binary=codec.binary,
            join=codec.join,
            max_bytes=self.config.client.queue_max_size,
            on_overflow=self._slow,
            watch=node.write_watch,
            on_write_timeout=self._write_timeout,
            framing=link.delivery.framing,
        )
        # The secret an emulation client names in its /emulation requests (its client id
        # is public: presence shows it). Prefixed with the node's id, so the session
        # alone says which node holds it.
        self.session_id = (f"{node.uid}.{secrets.token_urlsafe(18)}"
                           if link.emulation or link.unidirectional else "")
        self.expects_pong = not link.unidirectional  # uni clients cannot answer pings
        limit = self.config.client.command_rate_limit
        self.bucket = (TokenBucket(limit.rate_per_second, limit.burst, time.monotonic())
                       if limit.enabled else None)
        self.frames_in = 0
        self.bytes_in = 0
        self.last_error = ""
        self.awaiting_pong = False
        self._expiry_timer: Any = None
        self.deadline_slot = -1  # in the node's stale wheel until connected (on_start)
        self._closing = False
        self.close_code: codes.DisconnectCode | None = None  # what the server closed with
        self.client_close: int | None = None  # the client's close code, if it closed
        self._held: list[dict[str, Any]] | None = None  # commands sent during CONNECTING

    # -- lifecycle ------------------------------------------------------------------------
    def on_start(self) -> None:
        self.node.connection_opened(self)
        # Until connect: a socket without a connect command closes (3502 "stale"). The
        # node's wheel tells us _Expired then; a timer per socket would be started and
        # cancelled on every handshake.
        self.node.stale_wheel.add(self)

    def on_stop(self) -> None:
        self._release_session()

    def on_failure(self, error: BaseException) -> None:
        self.last_error = repr(error)
        self._close_socket(codes.DISCONNECT_SERVER_ERROR)
        self._release_session()

    def on_kill(self, reason: str) -> None:
        # Our supervisor ended (or a stop timed out): no socket may outlive its actor.
        # 3004 is a reconnect code, so the client comes back to a fresh actor and
        # recovers from its last offset.
        self.last_error = f"killed: {reason}"
        self.outbox.flush()
        self._close_socket(codes.DISCONNECT_SERVER_ERROR)
        self._release_session()

    def _release_session(self) -> None:
        session = self.session
        if session.phase is Phase.CLOSED:
            return
        was_connected = session.phase is Phase.CONNECTED
        if was_connected:
            journey.disconnected(self, self.close_code, self.client_close)
        session.phase = Phase.CLOSED
        self.outbox.close()
        for channel in list(session.subs):
            self._drop_subscription(channel, send_leave=was_connected)
        node = self.node
        node.connection_closed(self)
        node.stale_wheel.remove(self)
        if node.pings is not None:
            node.pings.remove(self)
        if node.presence_wheel is not None:
            node.presence_wheel.remove(self)
        if not self._closing:
            self._close_socket(None)

    # -- messages -------------------------------------------------------------------------
    def receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is Frame:
            self._on_frame(message.data)
        elif kind is SocketClosed:
            if self.client_close is None and not self._closing:
                self.client_close = message.code
            self.stop()
        elif kind is UniConnect:
            self.frames_in += 1
            self._dispatch({"id": 1, "connect": message.params})
        elif kind is Disconnect:
            self.disconnect(message.code)
        elif kind is _Expired:
            self._expired()
        elif kind is _SubExpired:
            self._subscription_expired(message.channel)
        else:
            return commands.handle_internal(self, message)
        return None

    def _on_frame(self, data: bytes | str) -> None:
        self.frames_in += 1
        self.bytes_in += len(data)
        try:
            commands = self.codec.decode_commands(data)
        except ProtocolError as error:
            self.last_error = f"bad frame: {error}"
            self.disconnect(codes.DISCONNECT_BAD_REQUEST)
            return
        for command in commands:
            if self.session.phase is Phase.CLOSED or self._closing:
                return
            if self.bucket is not None and not self.bucket.take(time.monotonic()):
                self.disconnect(codes.DISCONNECT_TOO_MANY_REQUESTS)
                return
            self._dispatch(command)

    def _dispatch(self, command: dict[str, Any]) -> None:
        if self.session.phase is Phase.CONNECTING:
            self._hold(command)
            return
        cmd_id = command.get("id", 0)
        method = _method(command)
        if method is None:
            if cmd_id:  # an id without a method is not a pong
                self.disconnect(codes.DISCONNECT_BAD_REQUEST)
            else:
                self._pong()
            return
        if self.session.phase is not Phase.CONNECTED and method != "connect":
            self.last_error = f"{method} before connect"
            self.disconnect(codes.DISCONNECT_BAD_REQUEST)
            return
        handler = commands.HANDLERS.get(method)
        if handler is None or (not cmd_id and method not in ("send",)):
            if not cmd_id:
                self.disconnect(codes.DISCONNECT_BAD_REQUEST)
            else:
                self.reply_error(cmd_id, codes.ERROR_METHOD_NOT_FOUND)
            return
        params = command[method]
        try:
            handler(self, cmd_id, params if isinstance(params, dict) else {})
        except Denied as denied:
            if denied.error.code == codes.ERROR_LIMIT_EXCEEDED.code:
                journey.refused(self, denied.error.code, f"{method}: {denied.error.message}")
            self.reply_error(cmd_id, denied.error)
        self.node.count_command(method)

    def _hold(self, command: dict[str, Any]) -> None:
        """SDKs send their subscribes right behind the connect command; while the connect
        proxy is asked they wait here, and run in order once connected (``release_held``),
        as centrifuge handles one client's commands in order. Error handling: more than
        ``HELD_MAX`` closes the connection (3501)."""
        held = self._held = self._held if self._held is not None else []
        if len(held) >= HELD_MAX:
            self.last_error = f"more than {HELD_MAX} commands before the connect reply"
            self.disconnect(codes.DISCONNECT_BAD_REQUEST)
            return
        held.append(command)

    def release_held(self) -> None:
        held, self._held = self._held, None
        for command in held or ():
            if self.session.phase is not Phase.CONNECTED or self._closing:
                return
            self._dispatch(command)

    # -- writing ----------------------------------------------------------------------------
    def write(self, reply: dict[str, Any]) -> None:
        self.outbox.push(self.codec.encode_reply(reply))

    def answer(self, cmd_id: int, method: str, result: dict[str, Any]) -> None:
        self.outbox.push(self.codec.encode_reply({"id": cmd_id, method: result}))

    def answer_connect(self, cmd_id: int, result: dict[str, Any]) -> None:
        """The connect result: a reply, or on a unidirectional link the connect push."""
        if self.link.unidirectional:
            self.write({"push": {"connect": result}})
        else:
            self.answer(cmd_id, "connect", result)

    def reply_error(self, cmd_id: int, error: codes.ErrorCode) -> None:
        if self.link.unidirectional:
            # Only the connect runs on a uni link: a refusal ends it, with a code.
            self.last_error = f"connect refused: {error.code} {error.message}"
            self.disconnect(UNI_ERROR_DISCONNECTS.get(error.code, codes.DISCONNECT_SERVER_ERROR))
            return
        if self.session.phase is not Phase.CONNECTED:  # only a connect is answered then
            journey.refused(self, error.code, error.message)
        self.outbox.push(self.codec.encode_reply(error.to_reply(cmd_id)))

    # -- pings and expiry ---------------------------------------------------------------------
    def start_timers(self) -> None:
        """Join the node's ping and presence wheels (see ``broker.connection.pings``)."""
        node = self.node
        if node.pings is not None:
            node.pings.add(self)
        if node.presence_wheel is not None:
            node.presence_wheel.add(self)

    def refresh_presence(self) -> None:
        """Called by the presence wheel every ``client.presence_update_interval``: renew
        this client's presence in its presence channels, which expires after three
        intervals without a refresh (a node that died leaves no ghosts for longer)."""
        node, client_id = self.node, self.session.client_id
        ttl = self.config.client.presence_update_interval * 3
        for sub in self.session.subs.values():
            if sub.options.presence:
                node.spawn(node.engine.add_presence(sub.channel, client_id,
                                                    self.client_info(sub), ttl))

    def send_ping(self) -> None:
        """Called by the ping wheel: an empty reply (uni: an empty push), pre-encoded and
        framed once per delivery."""
        self.outbox.push(*self.node.ping_frame(self.delivery))

    def _pong(self) -> None:
        self.awaiting_pong = False

    def schedule_expiry(self) -> None:
        expire_at = self.session.expire_at
        if self.deadline_slot >= 0:  # connected (or a hook answered): not stale any more
            self.node.stale_wheel.remove(self)
        if self._expiry_timer is not None:  # a refresh replaces the deadline
            self._expiry_timer.cancel()
            self._expiry_timer = None
        if expire_at:
            # A client refreshes within the close delay; the refresh proxy is asked on time.
            grace = 0.0 if self.session.server_refresh else self.config.client.expired_close_delay
            delay = max(0.0, expire_at - time.time()) + grace
            self._expiry_timer = self.start_timer(delay, _Expired())

    def _expired(self) -> None:
        session = self.session
        if session.phase in (Phase.NEW, Phase.CONNECTING):  # a hook that never answers too
            self.disconnect(codes.DISCONNECT_STALE)
        elif session.expire_at and session.expire_at <= time.time():
            flows.connection_expired(self)  # the refresh proxy may renew it
        elif session.expire_at and session.phase is Phase.CONNECTED:
            self.schedule_expiry()  # the timer fired a hair before expire_at

    def watch_subscription_expiry(self, sub: Subscription) -> None:
        """Close the connection (3006) if ``sub``'s token expires without a sub_refresh."""
        if sub.expire_at:
            delay = max(0.0, sub.expire_at - time.time())
            self.start_timer(delay + self.config.client.expired_sub_close_delay,
                             _SubExpired(sub.channel))

    def _subscription_expired(self, channel: str) -> None:
        sub = self.session.subs.get(channel)
        if sub is not None and sub.expire_at and sub.expire_at <= time.time():
            flows.subscription_expired(self, sub)  # the sub_refresh proxy may renew it

    # -- endings -------------------------------------------------------------------------------
    def disconnect(self, code: codes.DisconnectCode) -> None:
        """Flush what is queued, close the socket with ``code``, and stop."""
        if self._closing:
            return
        journey.refused(self, code.code, code.reason)
        self.outbox.flush()
        self._close_socket(code)
        self.stop()

    def _slow(self) -> None:
        self.last_error = "slow consumer: outbox over client.queue_max_size"
        self.node.count_slow_consumer()
        journey.record(self, "slow_consumer", code=codes.DISCONNECT_SLOW.code,
                       limit=self.config.client.queue_max_size)
        self._close_socket(codes.DISCONNECT_SLOW)
        self.runtime.tell(self.ref, SocketClosed())

    def _write_timeout(self) -> None:
        timeout = self.config.websocket.write_timeout
        self.last_error = f"write timeout: socket took nothing for {timeout:g}s " \
                          "(websocket.write_timeout)"
        self.node.count_slow_consumer()
        journey.record(self, "slow_consumer", code=codes.DISCONNECT_WRITE_ERROR.code,
                       timeout=timeout)
        self._close_socket(codes.DISCONNECT_WRITE_ERROR)
        self.runtime.tell(self.ref, SocketClosed())

    def _close_socket(self, code: codes.DisconnectCode | None) -> None:
        if self._closing:
            return
        self._closing = True
        self.close_code = code
        link = self.link
        if link.disconnect_push and code is not None and not self.outbox.closed:
            # An HTTP body has no close code: the client learns it from this push.
            self.outbox.push(self.codec.encode_reply(code.to_push()))
            self.outbox.flush()
        link.close(code)

    def _drop_subscription(self, channel: str, send_leave: bool) -> None:
        sub = self.session.subs.pop(channel, None)
        if sub is None:
            return
        self.node.unsubscribed(channel)
        self.node.tell_shard(channel, Unsubscribe(channel, self.session.client_id))
        if sub.options.presence:
            self.node.spawn(self.node.engine.remove_presence(
                channel, self.session.client_id, self.session.user))
        if send_leave and sub.options.join_leave and sub.active:
            self.node.join_leave(channel, self.client_info(sub), join=False)

    def client_info(self, sub: Subscription | None = None) -> ClientInfo:
        session = self.session
        return ClientInfo(session.user, session.client_id, session.info,
                          sub.info if sub is not None else None)

    def health(self) -> dict[str, Any]:
        """Per-connection health for the admin API and ``get_connection_health``."""
        stats = self.outbox.stats
        return {
            "client": self.session.client_id,
            "user": self.session.user,
            "remote": self.remote,
            "transport": self.link.name,
            "protocol": self.codec.name,
            "connected_at": self.connected_at,
            "subscriptions": sorted(self.session.subs),
            "messages_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "messages_out": stats.frames,
            "bytes_out": stats.bytes,
            "writes_out": stats.writes,
            "outbox_bytes": self.outbox.pending_bytes,
            "outbox_peak": stats.peak_pending,
            "last_error": self.last_error,
        }
