"""Server pings for every connection from one node-wide timer wheel.

Centrifugo protocol v2: the server sends an empty reply (``{}``) every ``ping_interval``;
the client answers with an empty command; no answer within ``pong_timeout`` means the
connection is dead (disconnect 3012 "no pong"). One loop timer per connection would cost
a timer handle each and an actor message every interval; instead the wheel has one slot
per second, a connection sits in the slot of the second it connected, and each tick pings
one slot and checks the pongs of the slot pinged ``pong_timeout`` seconds earlier. Pings
are data-path writes (straight into outboxes, the frame built once per wire format); only
a missing pong becomes an actor message. Unidirectional clients are pinged (an empty
push keeps proxies from timing the stream out) but cannot answer, so no pong is awaited.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from actors import Actor

if TYPE_CHECKING:
    from broker.node import Node


class Pingable(Protocol):
    awaiting_pong: bool
    expects_pong: bool  # False for unidirectional clients: pinged, never held to a pong

    def send_ping(self) -> None: ...


class PingWheel:
    """Slots of connections; ``tick()`` every ``resolution`` seconds (one second, or the
    interval when shorter) does one slot's pings and pongs."""

    def __init__(self, interval: float, pong_timeout: float,
                 on_no_pong: Callable[[Pingable], None]) -> None:
        self.resolution = min(1.0, interval)
        self.size = max(1, math.ceil(interval / self.resolution - 1e-9))
        self.pong_lag = (min(self.size - 1, math.ceil(pong_timeout / self.resolution - 1e-9))
                         if pong_timeout > 0 else -1)
        self.on_no_pong = on_no_pong
        self.slots: list[set[Pingable]] = [set() for _ in range(self.size)]
        self.position = 0
        self.pings = 0

    def add(self, conn: Pingable) -> None:
        """First ping one full interval from now (the slot just ticked)."""
        conn.awaiting_pong = False
        self.slots[(self.position - 1) % self.size].add(conn)

    def remove(self, conn: Pingable) -> None:
        for slot in self.slots:
            slot.discard(conn)

    def tick(self) -> None:
        """Ping the current slot; fail the connections of the slot pinged
        ``pong_timeout`` seconds ago that have not answered; advance."""
        if self.pong_lag >= 0:
            for conn in [c for c in self.slots[(self.position - self.pong_lag) % self.size]
                         if c.awaiting_pong]:
                self.on_no_pong(conn)
        for conn in self.slots[self.position]:
            conn.send_ping()
            conn.awaiting_pong = self.pong_lag >= 0 and conn.expects_pong
            self.pings += 1
        self.position = (self.position + 1) % self.size

    def __len__(self) -> int:
        return sum(len(slot) for slot in self.slots)


class PingerActor(Actor):
    """Owns the node's ping wheel and its timer: one tick per ``resolution`` seconds.

    Lives under the connection supervisor, so a restart of that supervisor (which ends
    every connection) restarts the wheel too. A fresh incarnation takes in the
    connections that are already connected, so a crash of the pinger alone leaves no
    connection unpinged. Its ending clears ``node.pings``: nothing ticks unowned.
    """

    kind = "pings"

    def __init__(self, node: Node) -> None:
        self.node = node
        client = node.config.client
        self.wheel = PingWheel(client.ping_interval, client.pong_timeout, self._no_pong)

    def on_start(self) -> None:
        from broker.connection.state import Phase

        for conn in self.node.connections.values():
            if conn.session.phase is Phase.CONNECTED:
                self.wheel.add(conn)
        if not self.node.draining:
            self.node.pings = self.wheel
        self.start_timer(self.wheel.resolution, "tick", repeat=True)

    def receive(self, message: Any) -> Any:
        if message == "tick":
            if self.node.pings is self.wheel:  # None once the node drains
                self.wheel.tick()
            return None
        return super().receive(message)

    def _no_pong(self, conn: Any) -> None:
        from broker.connection.actor import Disconnect
        from broker.names import connection_id
        from broker.protocol import codes

        conn.awaiting_pong = False
        self.tell(connection_id(conn.session.client_id), Disconnect(codes.DISCONNECT_NO_PONG))

    def _release_wheel(self) -> None:
        if self.node.pings is self.wheel:
            self.node.pings = None

    def on_stop(self) -> None:
        self._release_wheel()

    def on_failure(self, error: BaseException) -> None:
        self._release_wheel()

    def on_kill(self, reason: str) -> None:
        self._release_wheel()
