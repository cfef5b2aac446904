"""The Pusher connection actor: a ``ConnectionActor`` speaking Pusher protocol 7.

Everything under the session is the Centrifugo-protocol actor's: the outbox, the shard
``Subscribe``/``Activate``/``Unsubscribe`` steps (``start_subscription``), presence in
the engine and its refresh wheel, pings, slow-consumer and write-timeout handling,
supervision. What differs is the conversation: the socket is live at once
(``pusher:connection_established``), subscriptions are signed with the app secret
instead of JWTs, presence members are users (``member_added`` once per user, cluster
wide, ``member_removed`` when the user's last socket leaves), and ``client-*`` events
are published by clients where the app allows them, never echoed to the sender.

Error handling: bad input (not JSON, unknown event, bad subscription signature, client
event refused) is answered with ``pusher:error`` or ``pusher:subscription_error``; the
socket stays open. A bad ``pusher:signin`` closes it with 4009, as Pusher does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from typing import TYPE_CHECKING, Any

import orjson

from broker.connection.actor import ConnectionActor, Frame, SocketClosed
from broker.connection.state import Phase, Subscription, TokenBucket
from broker.connection.subscriptions import start_subscription
from broker.protocol import ProtocolError, codes
from broker.pusher import sign
from broker.pusher.codec import (
    EVENT_TAG,
    SOCKET_TAG,
    USER_TAG,
    chorus_channel,
    event,
    pusher_name,
)
from broker.pusher.state import CLOSE, pusher_state
from broker.shard.actor import Resync, Unsubscribe
from broker.types import ClientInfo

if TYPE_CHECKING:
    from broker.config.pusher import PusherApp
    from broker.node import Node
    from broker.transport.link import Link

CHANNEL_NAME = re.compile(r"^#?[-a-zA-Z0-9_=@,.;]{1,200}$")
USER_CHANNEL = "#server-to-user-"
_KNOWN = frozenset(("pusher:ping", "pusher:pong", "pusher:subscribe", "pusher:unsubscribe",
                    "pusher:signin"))
CLIENT_EVENTS_PER_SECOND = 10  # Pusher's documented limit per connection


class PusherConnectionActor(ConnectionActor):
    kind = "connection"

    def __init__(self, node: Node, link: Link, remote: str, socket_id: str,
                 app: PusherApp) -> None:
        super().__init__(node, link, remote, socket_id)
        self.app = app
        self.presence_users: dict[str, str] = {}  # chorus channel -> presence user id
        self.signed_user = ""  # the user id of a pusher:signin
        self.client_events = TokenBucket(CLIENT_EVENTS_PER_SECOND, CLIENT_EVENTS_PER_SECOND,
                                         time.monotonic())

    # -- lifecycle ------------------------------------------------------------------------
    def on_start(self) -> None:
        node = self.node
        node.connection_opened(self)
        pusher_state(node).opened(self.app.id, self.session.client_id)
        self.session.phase = Phase.CONNECTED  # Pusher has no connect command
        timeout = int(self.config.pusher.activity_timeout)
        self.outbox.push(event("pusher:connection_established", {
            "socket_id": self.session.client_id, "activity_timeout": timeout}))
        self.start_timers()

    def _release_session(self) -> None:
        if self.session.phase is not Phase.CLOSED:
            pusher_state(self.node).closed(self.app.id, self.session.client_id)
        super()._release_session()

    def receive(self, message: Any) -> Any:
        if type(message) is Frame:
            self._on_pusher_frame(message.data)
            return None
        if type(message) is SocketClosed:
            self.stop()
            return None
        if isinstance(message, Resync):
            return None  # Pusher channels keep no history: nothing to recover from
        return super().receive(message)

    # -- incoming events --------------------------------------------------------------------
    def _on_pusher_frame(self, data: bytes | str) -> None:
        self.frames_in += 1
        self.bytes_in += len(data)
        if self._closing or self.session.phase is Phase.CLOSED:
            return
        try:
            message = self.codec.decode_commands(data)[0]
        except ProtocolError as error:
            self.last_error = f"bad frame: {error}"
            self.error(None, f"Invalid message: {error}")
            return
        name = message["event"]
        payload = message.get("data")
        if isinstance(payload, str) and name.startswith("pusher:"):
            # pusher-js sends objects; some clients send JSON strings
            with contextlib.suppress(orjson.JSONDecodeError):
                payload = orjson.loads(payload)
        payload = payload if isinstance(payload, dict) else {}
        self.awaiting_pong = False  # any message proves the client alive
        if name == "pusher:ping":
            self.outbox.push(b'{"event":"pusher:pong","data":{}}')
        elif name == "pusher:pong":
            self._pong()
        elif name == "pusher:subscribe":
            self._subscribe(payload)
        elif name == "pusher:unsubscribe":
            self._drop_subscription(chorus_channel(self.app.id, str(payload.get("channel"))),
                                    send_leave=True)
        elif name == "pusher:signin":
            self._signin(payload)
        elif name.startswith("client-"):
            self._client_event(name, message)
        else:
            self.error(None, f"Unsupported event {name[:64]!r}")
        # Known names only: a client must not grow the counter's labels.
        self.node.count_command(name if name in _KNOWN else
                                "pusher:client-event" if name.startswith("client-")
                                else "pusher:other")

    def error(self, code: int | None, message: str, channel: str | None = None) -> None:
        """A ``pusher:error`` event; the socket stays open."""
        body = {"code": code, "message": message}
        self.outbox.push(event("pusher:error", channel=channel, raw_data=orjson.dumps(body)))

    def subscription_error(self, name: str, kind: str, text: str, status: int) -> None:
        body = {"type": kind, "error": text, "status": status}
        self.outbox.push(event("pusher:subscription_error", channel=name,
                               raw_data=orjson.dumps(body)))

    # -- subscriptions -------------------------------------------------------------------------
    def _subscribe(self, payload: dict[str, Any]) -> None:
        name = payload.get("channel")
        if not isinstance(name, str) or not CHANNEL_NAME.match(name):
            self.subscription_error(str(name)[:200], "InvalidChannel",
                                    "Invalid channel name", 4009)
            return
        channel = chorus_channel(self.app.id, name)
        if channel in self.session.subs:
            return  # as Pusher: a repeated subscribe is ignored
        presence = name.startswith("presence-")
        user_id = ""
        info: bytes | None = None
        if name.startswith(USER_CHANNEL):
            if not self.signed_user or name != USER_CHANNEL + self.signed_user:
                self.subscription_error(name, "AuthError", "Sign in as this user first", 401)
                return
        elif presence or name.startswith("private-"):
            channel_data = payload.get("channel_data") if presence else None
            if presence and not isinstance(channel_data, str):
                self.subscription_error(name, "AuthError", "channel_data required", 401)
                return
            if not sign.channel_auth_ok(self.app.key, self.app.secret, self.session.client_id,
                                        name, payload.get("auth"), channel_data):
                self.subscription_error(name, "AuthError", "Invalid signature", 401)
                return
            if isinstance(channel_data, str):
                parsed = _presence_member(channel_data)
                if parsed is None:
                    self.subscription_error(name, "AuthError",
                                            "channel_data must have a user_id", 401)
                    return
                user_id, info = parsed
        options = dataclasses.replace(self.node.options(channel), presence=presence,
                                      join_leave=False, force_push_join_leave=False)
        sub = Subscription(channel, options, info=info)
        occupancy = pusher_state(self.node).occupancy
        if occupancy is not None and not self.node.channel_subscribers.get(channel):
            occupancy.changed(self.app, channel, held=True)  # cluster wide: see occupancy
        if not presence:
            start_subscription(self, sub, {}, lambda _: self.outbox.push(event(
                "pusher_internal:subscription_succeeded", channel=name, raw_data=b'"{}"')))
            return
        self.presence_users[channel] = user_id
        self.run_effect(self.node.engine.presence(channel),
                        on_result=lambda before: self._join_presence(sub, before),
                        on_error=self._engine_failed)

    def _join_presence(self, sub: Subscription, before: dict[str, ClientInfo]) -> None:
        if self._closing or self.session.phase is Phase.CLOSED:
            return
        me = self.session.client_id
        members = {info.user: info.chan_info for cid, info in before.items() if cid != me}
        user_id = self.presence_users[sub.channel]
        new_user = user_id not in members
        members[user_id] = sub.info
        name = pusher_name(sub.channel)

        def succeeded(_: dict[str, Any]) -> None:
            hash_ = {uid: orjson.loads(raw) if raw else None for uid, raw in members.items()}
            data = {"presence": {"ids": list(members), "hash": hash_, "count": len(members)}}
            self.outbox.push(event("pusher_internal:subscription_succeeded", data, name))
            if new_user:  # before Activate: the shard will not echo it to this socket
                self.node.join_leave(sub.channel, self.client_info(sub), join=True)
                hooks = pusher_state(self.node).webhooks
                if hooks is not None:
                    hooks.member_event(self.app, "member_added", name, user_id)

        start_subscription(self, sub, {"join_leave": True}, succeeded)

    def _engine_failed(self, error: BaseException) -> None:
        self.last_error = f"engine: {error!r}"
        self.disconnect(codes.DISCONNECT_SERVER_ERROR)

    def client_info(self, sub: Subscription | None = None) -> ClientInfo:
        session = self.session
        user = self.presence_users.get(sub.channel, "") if sub else self.signed_user
        return ClientInfo(user, session.client_id, None, sub.info if sub else None)

    def _drop_subscription(self, channel: str, send_leave: bool) -> None:
        sub = self.session.subs.get(channel)
        if sub is None:
            return
        self._drop(channel, sub, send_leave)
        occupancy = pusher_state(self.node).occupancy
        if occupancy is not None and not self.node.channel_subscribers.get(channel):
            occupancy.changed(self.app, channel, held=False)

    def _drop(self, channel: str, sub: Subscription, send_leave: bool) -> None:
        if not sub.options.presence:
            super()._drop_subscription(channel, send_leave)
            return
        del self.session.subs[channel]
        node, client_id = self.node, self.session.client_id
        node.unsubscribed(channel)
        node.tell_shard(channel, Unsubscribe(channel, client_id))
        info = self.client_info(sub)
        self.presence_users.pop(channel, None)
        node.spawn(_leave_presence(node, self.app, channel, info,
                                   announce=send_leave and sub.active))

    # -- client events and sign-in -------------------------------------------------------------
    def _client_event(self, name: str, message: dict[str, Any]) -> None:
        channel_name = message.get("channel")
        if not self.app.enable_client_messages:
            self.error(4301, "The app does not have client messaging enabled.", channel_name)
            return
        if not isinstance(channel_name, str) or not channel_name.startswith(
                ("private-", "presence-")) or channel_name.startswith("private-encrypted-"):
            self.error(4301, "Client events need a private or presence channel.",
                       channel_name if isinstance(channel_name, str) else None)
            return
        channel = chorus_channel(self.app.id, channel_name)
        sub = self.session.subs.get(channel)
        if sub is None or not sub.active:
            self.error(4301, "Subscribe to the channel before sending client events.",
                       channel_name)
            return
        if not self.client_events.take(time.monotonic()):
            self.error(4301, "The rate limit for sending client events exceeded the quota.",
                       channel_name)
            return
        tags = {EVENT_TAG: name[:200], SOCKET_TAG: self.session.client_id}
        user = self.presence_users.get(channel)
        if user:
            tags[USER_TAG] = user
        data = orjson.dumps(message.get("data"))
        pusher_state(self.node).events_in[self.app.id] += 1
        self.run_effect(self.node.publish(channel, data, tags=tags),
                        on_error=lambda error: self.error(4301, f"not delivered: {error}",
                                                          channel_name))
        hooks = pusher_state(self.node).webhooks
        if hooks is not None:
            hooks.client_event(self.app, channel_name, name, data, self.session.client_id,
                               user)

    def _signin(self, payload: dict[str, Any]) -> None:
        user_data, auth = payload.get("user_data"), payload.get("auth")
        user: dict[str, Any] | None = None
        if self.app.enable_user_authentication and isinstance(user_data, str) and \
                sign.signin_ok(self.app.key, self.app.secret, self.session.client_id,
                               user_data, auth):
            try:
                parsed = orjson.loads(user_data)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict) and parsed.get("id") not in (None, ""):
                user = parsed
        if user is None:
            self.error(4009, "Connection not authorized.")
            self.last_error = "pusher:signin refused"
            self.disconnect(CLOSE["unauthorized"])
            return
        node = self.node
        if self.signed_user:  # signing in again replaces the user
            node.connection_closed(self)
            node.connection_opened(self)
        self.signed_user = str(user["id"])
        # Namespaced for the node's user directory: the server API's
        # terminate_connections reaches this app's user, never a Centrifugo user.
        self.session.user = app_user(self.app.id, self.signed_user)
        self.session.info = orjson.dumps(user)
        node.connection_authenticated(self)
        self.outbox.push(event("pusher:signin_success", raw_data=orjson.dumps(
            {"user_data": user_data})))


def app_user(app_id: str, user_id: str) -> str:
    """The node-directory name of a signed-in user of a Pusher app."""
    return f"pusher:{app_id}:{user_id}"


def _presence_member(channel_data: str) -> tuple[str, bytes | None] | None:
    """(user id, user info as JSON) of a presence subscription's ``channel_data``."""
    try:
        parsed = orjson.loads(channel_data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or parsed.get("user_id") in (None, ""):
        return None
    user_info = parsed.get("user_info")
    return str(parsed["user_id"]), (orjson.dumps(user_info) if user_info is not None
                                    else None)


async def _leave_presence(node: Node, app: PusherApp, channel: str, info: ClientInfo, *,
                          announce: bool) -> None:
    """Drop a socket from a presence channel; ``member_removed`` (cluster wide) only when
    it was the user's last socket there."""
    engine = node.engine
    await engine.remove_presence(channel, info.client, info.user)
    if not announce:
        return
    members = await engine.presence(channel)
    if all(other.user != info.user for other in members.values()):
        node.join_leave(channel, info, join=False)
        hooks = pusher_state(node).webhooks
        if hooks is not None:
            hooks.member_event(app, "member_removed", pusher_name(channel), info.user)
