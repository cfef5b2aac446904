"""What a node knows of its Pusher apps: sockets per app, signed-in users, webhooks.

Kept beside the node (one ``PusherState`` per ``Node``, see ``pusher_state``) rather
than in it, so the Centrifugo-protocol path carries nothing of Pusher's. Everything here
is touched on the event loop thread only.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from broker.protocol import codes

if TYPE_CHECKING:
    from broker.node import Node

__all__ = ["CLOSE", "HEARTBEAT_FIELD", "PusherState", "cluster_connections", "heartbeat_fields",
           "local_channels", "new_socket_id", "pusher_state"]

# The field of a node's heartbeat (broker.cluster) carrying its Pusher sockets per app.
HEARTBEAT_FIELD = "pusher_sockets"


def new_socket_id() -> str:
    """A socket id as Pusher makes them, ``digits.digits``: the server libraries refuse
    any other shape (``socket_id`` of a trigger, channel auth)."""
    return f"{secrets.randbelow(10**9)}.{secrets.randbelow(10**9)}"


# Pusher's close codes (4000-4099: do not reconnect; 4100-4199: reconnect after a pause;
# 4200-4299: reconnect at once).
CLOSE = {
    "app_missing": codes.DisconnectCode(4001, "App key does not exist", False),
    "app_disabled": codes.DisconnectCode(4003, "App is disabled", False),
    "over_quota": codes.DisconnectCode(4004, "App is over connection quota", False),
    "path": codes.DisconnectCode(4005, "Path not found", False),
    "version": codes.DisconnectCode(4007, "Unsupported protocol version", False),
    "no_version": codes.DisconnectCode(4008, "No protocol version supplied", False),
    "unauthorized": codes.DisconnectCode(4009, "Connection is unauthorized", False),
    "capacity": codes.DisconnectCode(4100, "Over capacity", True),
    "reconnect": codes.DisconnectCode(4200, "Please reconnect immediately", True),
    "no_pong": codes.DisconnectCode(4201, "Pong reply not received", True),
    "inactive": codes.DisconnectCode(4202, "Closed after inactivity", True),
}

# The broker's own reasons to close a socket, in Pusher's words.
FROM_CENTRIFUGO = {
    codes.DISCONNECT_SLOW.code: CLOSE["capacity"],
    codes.DISCONNECT_WRITE_ERROR.code: CLOSE["capacity"],
    codes.DISCONNECT_NO_PONG.code: CLOSE["no_pong"],
    codes.DISCONNECT_STALE.code: CLOSE["inactive"],
    codes.DISCONNECT_TOO_MANY_REQUESTS.code: CLOSE["capacity"],
    codes.DISCONNECT_FORCE_NO_RECONNECT.code: CLOSE["unauthorized"],
}


def pusher_close(code: codes.DisconnectCode | None) -> codes.DisconnectCode:
    """The close a pusher-js client gets for ``code`` (None: a normal close, 4200)."""
    if code is None:
        return CLOSE["reconnect"]
    if 4000 <= code.code < 4300:
        return code
    return FROM_CENTRIFUGO.get(code.code, CLOSE["reconnect"])


@dataclass
class PusherState:
    """Per node: connected sockets by app, counters, the webhook sender."""

    sockets: dict[str, set[str]] = field(default_factory=dict)  # app id -> socket ids
    events_in: Counter[str] = field(default_factory=Counter)  # app id -> client events
    api_calls: Counter[str] = field(default_factory=Counter)  # app id -> API requests
    webhooks: Any = None  # broker.pusher.webhooks.WebhookSender, started lazily
    occupancy: Any = None  # broker.pusher.occupancy.Occupancy, beside the webhooks

    def connections(self, app_id: str) -> int:
        return len(self.sockets.get(app_id, ()))

    def opened(self, app_id: str, socket_id: str) -> None:
        self.sockets.setdefault(app_id, set()).add(socket_id)

    def closed(self, app_id: str, socket_id: str) -> None:
        self.sockets.get(app_id, set()).discard(socket_id)


def local_channels(node: Node) -> dict[str, Counter[str]]:
    """App id -> {Pusher channel name: this node's sockets subscribed to it}.

    Read from the Pusher sockets' own sessions (no shard round trip), so a scrape or the
    admin console costs one pass over this node's Pusher sockets and their subscriptions.
    A subscription still being confirmed by its shard counts already; the
    ``#server-to-user-*`` channels of signed-in users are left out (Pusher lists them nowhere).
    """
    from broker.pusher.actor import PusherConnectionActor  # the actor imports this module
    from broker.pusher.codec import pusher_name

    out: dict[str, Counter[str]] = {app.id: Counter() for app in node.config.pusher.apps}
    for conn in node.connections.values():
        if isinstance(conn, PusherConnectionActor):
            counts = out.setdefault(conn.app.id, Counter())
            for channel in conn.session.subs:
                name = pusher_name(channel)
                if not name.startswith("#"):
                    counts[name] += 1
    return out


def heartbeat_fields(node: Node) -> dict[str, Any]:
    """What this node's heartbeat adds for Pusher: its sockets per app (nothing when no
    app is configured)."""
    apps = node.config.pusher.apps
    if not apps:
        return {}
    state = pusher_state(node)
    return {HEARTBEAT_FIELD: {app.id: state.connections(app.id) for app in apps}}


def cluster_connections(node: Node, app_id: str) -> int:
    """The app's sockets in the cluster: this node's now, plus each other live node's as
    of its latest heartbeat (``broker.cluster``: at most ``HEARTBEAT_INTERVAL`` old, so
    sockets that open on several nodes within that time are not yet seen by the others).
    """
    total = pusher_state(node).connections(app_id)
    for info in node.directory.alive(time.time()):
        counts = info.get(HEARTBEAT_FIELD)
        if isinstance(counts, dict):
            count = counts.get(app_id)
            if isinstance(count, int) and count > 0:
                total += count
    return total


_STATES: WeakKeyDictionary[Node, PusherState] = WeakKeyDictionary()


def pusher_state(node: Node) -> PusherState:
    state = _STATES.get(node)
    if state is None:
        state = _STATES[node] = PusherState()
        if any(app.webhooks for app in node.config.pusher.apps):
            from broker.pusher.occupancy import Occupancy
            from broker.pusher.webhooks import WebhookSender

            state.webhooks = WebhookSender(node)
            state.occupancy = Occupancy(node, state.webhooks)
    return state
