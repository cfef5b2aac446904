"""The node's side of its connections (a mixin of :class:`broker.node.Node`).

Admission against the connection limits, the directory of this node's connections,
users and emulation sessions, the subscription counters and channel compaction ids, and
the per-connection ping frames and timers. Like the rest of the node: synchronous, no
locks, everything on the event loop thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actors import Runtime
from broker.config import Config
from broker.connection.framing import Delivery
from broker.connection.pings import PingWheel, RefreshWheel
from broker.connection.writewatch import WriteWatch
from broker.names import connection_id
from broker.protocol import codes

if TYPE_CHECKING:
    from broker.connection.actor import ConnectionActor


class NodeConnections:
    """Connection bookkeeping of :class:`broker.node.Node`; the attributes below are
    set by ``Node.__init__``."""

    config: Config
    runtime: Runtime
    connections: dict[str, ConnectionActor]
    users: dict[str, set[str]]
    sessions: dict[str, str]
    single_connection: bool
    subscriptions: int
    channel_subscribers: Counter[str]
    channel_ids: dict[str, int]
    _last_channel_id: int
    pings: PingWheel | None
    write_watch: WriteWatch | None
    presence_wheel: RefreshWheel[Any] | None
    _ping_frames: dict[Delivery, tuple[bytes, bytes]]
    message_handlers: list[Callable[[str, str, bytes], None]]  # node.MessageHandler

    # -- per-connection timers ------------------------------------------------------------
    def _no_pong(self, conn: Any) -> None:
        from broker.connection.actor import Disconnect

        conn.awaiting_pong = False
        self.runtime.tell(connection_id(conn.session.client_id),
                          Disconnect(codes.DISCONNECT_NO_PONG))

    def ping_frame(self, delivery: Delivery) -> tuple[bytes, bytes]:
        """The server ping (an empty reply, or push) encoded and framed for ``delivery``,
        built once per delivery."""
        frames = self._ping_frames.get(delivery)
        if frames is None:
            frame = delivery.codec.encode_reply({})
            frames = self._ping_frames[delivery] = (frame, delivery.framing.one(frame))
        return frames

    def stop_pings(self) -> None:
        """No more pings, presence refreshes or write-watch ticks (draining: the
        connections are about to be told to leave)."""
        self.pings, self.write_watch, self.presence_wheel = None, None, None

    # -- connections ---------------------------------------------------------------------------
    def admit(self, user: str) -> codes.DisconnectCode | None:
        """A disconnect code if one more connection of ``user`` is over a limit.

        Under ``single_connection`` the user limit is not checked: the new connection
        replaces the user's others (still counted here until they close), so refusing
        it would leave the user with none.
        """
        limits = self.config.client
        if limits.connection_limit and len(self.connections) > limits.connection_limit:
            return codes.DISCONNECT_CONNECTION_LIMIT
        if user and limits.user_connection_limit and not self.single_connection and \
                len(self.users.get(user, ())) >= limits.user_connection_limit:
            return codes.DISCONNECT_CONNECTION_LIMIT
        return None

    def connection_opened(self, conn: ConnectionActor) -> None:
        self.connections[conn.session.client_id] = conn
        if conn.link.emulation:
            self.sessions[conn.session_id] = conn.session.client_id

    def connection_authenticated(self, conn: ConnectionActor) -> None:
        self.users.setdefault(conn.session.user, set()).add(conn.session.client_id)

    def connection_closed(self, conn: ConnectionActor) -> None:
        client_id = conn.session.client_id
        self.connections.pop(client_id, None)
        self.sessions.pop(conn.session_id, None)
        clients = self.users.get(conn.session.user)
        if clients is not None:
            clients.discard(client_id)
            if not clients:
                del self.users[conn.session.user]

    def get_connection_health(self, client_id: str | None = None) -> list[dict[str, Any]]:
        """Per-connection health (user, client, remote, protocol, since, subscriptions,
        messages and bytes in/out, outbox depth and peak, last error): every connection,
        or the one named (an empty list if it is gone)."""
        if client_id is not None:
            conn = self.connections.get(client_id)
            return [] if conn is None else [conn.health()]
        return [conn.health() for conn in self.connections.values()]

    def subscribed(self, channel: str) -> None:
        self.subscriptions += 1
        self.channel_subscribers[channel] += 1

    def unsubscribed(self, channel: str) -> None:
        self.subscriptions -= 1
        left = self.channel_subscribers[channel] - 1
        if left > 0:
            self.channel_subscribers[channel] = left
        else:
            del self.channel_subscribers[channel]
            self.channel_ids.pop(channel, None)

    def channel_id(self, channel: str) -> int:
        """The channel's compaction id on this node (call after ``subscribed``): the same
        for every subscriber while the channel has any here, so the shard encodes one
        frame per format for all of them; a channel that empties gets a new id next time
        (ids are scoped to a client's session, so SDKs re-learn them on resubscribe)."""
        found = self.channel_ids.get(channel)
        if found is None:
            self._last_channel_id += 1
            found = self.channel_ids[channel] = self._last_channel_id
        return found

    def personal_channels(self, user: str) -> list[str]:
        personal = self.config.client.subscribe_to_user_personal_channel
        if not personal.enabled or not user:
            return []
        namespace = personal.personal_channel_namespace
        prefix = f"{namespace}{self.config.channel.namespace_boundary}" if namespace else ""
        return [f"{prefix}{self.config.channel.user_boundary}{user}"]

    def user_connections(self, user: str) -> list[str]:
        return sorted(self.users.get(user, ()))

    def on_client_message(self, user: str, client: str, data: bytes) -> None:
        for handler in self.message_handlers:
            handler(user, client, data)
