"""Ticks: the loop iterations at whose end a node's queued frames are written.

``FlushScheduler`` marks ticks for the whole node and, when one ends, flushes the tick
batches (``broker.shard.batch``) and then every outbox that queued frames during it
(``broker.connection.outbox``). How long a tick lasts is where latency is traded for
writes: see the class.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from broker.connection.outbox import Outbox

__all__ = ["Batch", "FlushScheduler"]


class Batch(Protocol):
    """Frames gathered during a tick for several outboxes, written when it ends."""

    def flush(self) -> int:
        """Write what was gathered; returns how many frames each member got."""
        ...


class FlushScheduler:
    """Marks loop iterations ("ticks") and flushes queued frames at the end of each.

    One ``call_soon`` per tick for the whole node, not one per connection. ``tick``
    counts ticks so an outbox can tell whether it already wrote during this one.

    Besides outboxes, *batches* can wait for the end of a tick: anything with a
    ``flush() -> int`` (frames written per member), flushed before the outboxes, so a
    batch that finds frames already queued in an outbox appends to them and the outbox
    still leaves in one write, in order (see ``broker.shard.batch``).

    How long a tick lasts (latency traded for fewer writes, the syscall being the cost):

    - ``burst_delay`` (``client.burst_write_delay``): while the node is in a burst, the
      end of a tick waits this long. Publications of a burst reach the node a request at
      a time, a loop iteration or two apart; ending the tick at once wrote them one or
      two per write (measured: 2.5 frames per write with 8 publishers in flight), waiting
      a millisecond lets all of them share each subscriber's write (8 per write, 2.6x
      fewer server CPU-seconds per delivery). Outside a burst nothing waits.
    - ``delay`` (``client.write_delay``, Centrifugo PRO's key): every tick waits this
      long, and nothing is written straight through (``busy`` stays set), for nodes
      that would rather spend latency than CPU all the time.
    """

    __slots__ = ("_batches", "_burst_delay", "_delay", "_dirty", "_loop", "busy",
                 "scheduled", "tick")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, delay: float = 0.0,
                 burst_delay: float = 0.0) -> None:
        self._loop = loop
        self._dirty: list[Outbox] = []
        self._batches: list[Batch] = []
        self._delay = delay
        self._burst_delay = max(delay, burst_delay)
        self.scheduled = False
        self.tick = 0
        # True after a tick in which some outbox coalesced several frames: under such a
        # burst even the first frame of a tick waits, so each connection gets one write
        # per tick instead of two. Always True with a ``delay``.
        self.busy = delay > 0

    def touch(self) -> None:
        """Make sure this tick ends (and queued frames flush) soon."""
        if not self.scheduled:
            self.scheduled = True
            if self.busy and self._burst_delay > 0:
                self._loop.call_later(self._burst_delay, self.end_tick)
            else:
                self._loop.call_soon(self.end_tick)

    def mark(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        self.touch()

    def defer(self, batch: Batch) -> None:
        """Flush ``batch`` when this tick ends (before the outboxes)."""
        self._batches.append(batch)
        self.touch()

    def end_tick(self) -> None:
        self.scheduled = False
        self.tick += 1
        busy = False
        if self._batches:
            batches, self._batches = self._batches, []
            for batch in batches:
                if batch.flush() > 1:
                    busy = True
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            if outbox.flush() > 1:
                busy = True
        self.busy = busy or self._delay > 0

    # Kept for callers that only want "flush what is queued now".
    flush_all = end_tick
