"""What a connection records of its journey: one function per lifecycle step.

Called by the connection actor and its command handlers at the step itself (connect
answered, subscribe answered, refresh, refusal, slow consumer, close), never per
delivery. Each is a no-op when journeys are off (``node.journal`` is None), and
otherwise one dict appended to the node's ``JournalFeed``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from broker.connection.state import Phase
from broker.protocol import codes

if TYPE_CHECKING:
    from broker.connection.actor import ConnectionActor
    from broker.node import Node

# Disconnects that are a limit being hit (connection/user limit, channel limit, rate).
LIMIT_CODES = frozenset({codes.DISCONNECT_CONNECTION_LIMIT.code,
                         codes.DISCONNECT_CHANNEL_LIMIT.code,
                         codes.DISCONNECT_TOO_MANY_REQUESTS.code})

# The WebSocket close codes a client's side usually ends with (RFC 6455).
CLIENT_CLOSES = {1000: "closed by the client", 1001: "going away",
                 1006: "connection lost (no close frame)",
                 codes.DISCONNECT_CONNECTION_CLOSED.code: "connection closed"}


def record(conn: ConnectionActor, event: str, **fields: Any) -> None:
    """Record ``event`` of ``conn`` with ``fields`` (no-op with journeys off)."""
    feed = conn.node.journal
    if feed is not None:
        session = conn.session
        feed.record(event, session.client_id, session.user, fields)


def connected(conn: ConnectionActor) -> None:
    """The connect reply is on its way: transport, protocol, SDK, time since the socket
    opened."""
    session = conn.session
    record(conn, "connect", transport=conn.link.name, protocol=conn.codec.name,
           sdk=session.name, sdk_version=session.version, remote=conn.remote,
           time_to_connect=max(0.0, time.time() - conn.connected_at))


def refused(conn: ConnectionActor, code: int, reason: str) -> None:
    """The connection ends (or a connect is refused) with ``code``: a limit hit, or a
    refusal before the connect reply (an auth failure; 3502 stale: no connect at all)."""
    if conn.node.journal is None:
        return
    before_connect = conn.session.phase in (Phase.NEW, Phase.CONNECTING)
    if code in LIMIT_CODES or code == codes.ERROR_LIMIT_EXCEEDED.code:
        record(conn, "limit", code=code, reason=reason, refused=before_connect)
    elif before_connect:
        kind = "connect_failed" if code == codes.DISCONNECT_STALE.code else "auth_failure"
        record(conn, kind, code=code, reason=reason, detail=conn.last_error,
               transport=conn.link.name)


def subscribed(conn: ConnectionActor, channel: str, result: dict[str, Any],
               server_side: bool) -> int:
    """A subscribe answered with ``result``; returns how many publications it replayed."""
    replayed = len(result.get("publications") or ())
    if conn.node.journal is not None:
        fields: dict[str, Any] = {"channel": channel, "server_side": server_side,
                                  "recovering": bool(result.get("was_recovering")),
                                  "replayed": replayed}
        if fields["recovering"]:
            fields["recovered"] = bool(result.get("recovered"))
            fields["epoch"] = result.get("epoch", "")
            fields["offset"] = result.get("offset", 0)
        record(conn, "subscribe", **fields)
    return replayed


def disconnected(conn: ConnectionActor, code: codes.DisconnectCode | None,
                 client_code: int | None) -> None:
    """The session of a connected client ends: the server's code, or the client's."""
    if conn.node.journal is None:
        return
    if code is not None:
        number, reason = code.code, code.reason
    else:
        number = client_code if client_code else codes.DISCONNECT_CONNECTION_CLOSED.code
        reason = CLIENT_CLOSES.get(number, "closed by the client")
    record(conn, "disconnect", code=number, reason=reason,
           duration=max(0.0, time.time() - conn.connected_at),
           subscriptions=sorted(conn.session.subs), messages_out=conn.outbox.stats.frames)


def first_publications(node: Node, channel: str, conn_ids: list[str]) -> None:
    """The shard saw these subscribers of ``channel`` get their first publication."""
    feed = node.journal
    if feed is None:
        return
    for conn_id in conn_ids:
        conn = node.connections.get(conn_id)
        feed.record("first_publication", conn_id, conn.session.user if conn else "",
                    {"channel": channel})
