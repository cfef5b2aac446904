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

``RefreshWheel`` spreads presence refreshes the same way; ``DeadlineWheel`` holds each new
socket until its connect command (``client.stale_close_delay``), instead of one loop
timer per connection started and cancelled on every handshake. The wheels and the write watch
are node-wide data; their ticks are ``ConnectionTimersActor``'s timers, so nothing ticks
unowned: the actor's end stops them, its restart resumes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from actors import Actor

if TYPE_CHECKING:
    from broker.node import Node

T = TypeVar("T")


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


class RefreshWheel(Generic[T]):
    """Members in one-second slots; each ``tick`` (every ``resolution`` seconds) calls
    ``visit`` on one slot's members, so each member is visited once per ``interval``
    and the work is spread evenly over it (presence refreshes: one engine call per
    subscription every ``client.presence_update_interval``, not all at once)."""

    def __init__(self, interval: float, visit: Callable[[T], None]) -> None:
        self.resolution = min(1.0, interval)
        self.size = max(1, math.ceil(interval / self.resolution - 1e-9))
        self.visit = visit
        self.slots: list[set[T]] = [set() for _ in range(self.size)]
        self.position = 0

    def add(self, member: T) -> None:
        """First visit one full interval from now (the slot just ticked)."""
        self.slots[(self.position - 1) % self.size].add(member)

    def remove(self, member: T) -> None:
        for slot in self.slots:
            slot.discard(member)

    def tick(self) -> None:
        for member in list(self.slots[self.position]):
            self.visit(member)
        self.position = (self.position + 1) % self.size


class Deadlined(Protocol):
    deadline_slot: int  # the member's slot in its DeadlineWheel, -1 when in none


class DeadlineWheel:
    """A deadline per member, the same ``delay`` for all, at one-tick precision: a
    member not ``remove``d within ``delay`` is passed to ``on_due`` (once) at most one
    ``resolution`` later, never earlier. ``add`` and ``remove`` are O(1): the member
    carries its slot index (``deadline_slot``).

    Error handling: none here; ``on_due`` runs in the ticking actor, so it must only
    hand the member a message (a connection's deadline is its own actor's business).
    """

    def __init__(self, delay: float, on_due: Callable[[Any], None]) -> None:
        self.resolution = min(1.0, delay)
        # One more slot than ``delay`` spans: a member added just before its slot's
        # neighbour ticks still waits the full delay.
        self.size = max(1, math.ceil(delay / self.resolution - 1e-9)) + 1
        self.on_due = on_due
        self.slots: list[set[Any]] = [set() for _ in range(self.size)]
        self.position = 0
        self.due = 0

    def add(self, member: Deadlined) -> None:
        """Due ``size`` ticks from now (the slot just ticked)."""
        index = (self.position - 1) % self.size
        self.slots[index].add(member)
        member.deadline_slot = index

    def remove(self, member: Deadlined) -> None:
        index = member.deadline_slot
        if index >= 0:
            self.slots[index].discard(member)
            member.deadline_slot = -1

    def tick(self) -> None:
        position = self.position
        slot = self.slots[position]
        self.position = (position + 1) % self.size
        if slot:
            self.slots[position] = set()
            for member in slot:
                member.deadline_slot = -1
                self.due += 1
                self.on_due(member)

    def __len__(self) -> int:
        return sum(len(slot) for slot in self.slots)


# The node's per-connection timer structures, by attribute name on the node.
TIMED = ("pings", "write_watch", "presence_wheel", "stale_wheel")


class ConnectionTimersActor(Actor):
    """Ticks the node's per-connection timer structures — the ping wheel, the write
    watch, the presence refresh wheel, the stale-socket wheel — each on its own
    repeating timer of this actor.

    Lives under the connection supervisor. The structures are node-wide data that
    connections join and leave; what is long-lived about them is the ticking, and that
    belongs to this actor: its end (stop, failure, kill) stops every tick, its restart
    resumes them, and a draining node (``Node.stop_pings``) has no structures to tick.
    """

    kind = "timers"

    def __init__(self, node: Node) -> None:
        self.node = node

    def on_start(self) -> None:
        for name in TIMED:
            timed = getattr(self.node, name, None)
            if timed is not None:
                self.start_timer(timed.resolution, name, repeat=True)

    def receive(self, message: Any) -> Any:
        if message in TIMED:
            timed = getattr(self.node, message, None)
            if timed is not None:  # None once the node drains
                timed.tick()
            return None
        return super().receive(message)
