"""``websocket.write_timeout``: find the connections whose socket stopped taking bytes.

Centrifugo (gorilla/websocket) puts a deadline on every socket write and disconnects
the client with 3009 "write error" when a write does not finish in ``write_timeout``.
Chorus never blocks on a write: a frame the kernel cannot take yet waits in the
transport's buffer. The equivalent rule, checked here: bytes handed to the transport
must reach the kernel within ``write_timeout``.

Cost: nothing per delivery. An outbox registers itself only when a write leaves bytes
in the transport buffer — it reads that size on every write already (see
``Outbox._write``) — and a node timer, four times per ``write_timeout``, looks at the
registered outboxes only. A timeout is seen between ``write_timeout`` and
``write_timeout`` plus two timer periods after the oldest waiting byte was written.

Loop stalls do not count: a transport drains only when the event loop polls its
socket, so time the loop spent elsewhere (seen as the timer firing late) is taken off
every waiting mark — an overloaded node does not cut healthy clients.

Error handling: none raised; a timed-out outbox is unregistered and told once
(``Outbox.write_timed_out``), which closes it and calls its connection back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Watched(Protocol):
    """What the watch needs of an outbox."""

    closed: bool
    watched: bool

    @property
    def bytes_written(self) -> int: ...

    def transport_buffered(self) -> int: ...

    def write_timed_out(self) -> None: ...


class WriteWatch:
    """Outboxes with bytes waiting in their transport, each with a mark: when it was
    last seen caught up to (on the stall-free clock), and how many bytes had been
    written by then. ``tick`` is meant to run every ``resolution`` seconds."""

    def __init__(self, timeout: float, clock: Callable[[], float]) -> None:
        self.timeout = timeout
        self.resolution = timeout / 4
        self.clock = clock
        self._marks: dict[Watched, tuple[float, int]] = {}
        self._last_tick = clock()
        self._stalled = 0.0  # loop time lost to late ticks, in total
        self.timeouts = 0

    def _now(self) -> float:
        """The clock without the loop's stalls."""
        return self.clock() - self._stalled

    def add(self, outbox: Watched) -> None:
        """``outbox`` just left bytes in its transport buffer: everything written so far
        must reach the kernel within ``timeout`` from now."""
        outbox.watched = True
        self._marks[outbox] = (self._now(), outbox.bytes_written)

    def tick(self) -> None:
        """Drop outboxes whose buffer emptied, move the mark of those that progressed,
        and time out those still holding bytes marked ``timeout`` ago or earlier."""
        clock = self.clock()
        self._stalled += max(0.0, clock - self._last_tick - self.resolution)
        self._last_tick = clock
        now = clock - self._stalled
        marks = self._marks
        for outbox, (since, upto) in list(marks.items()):
            buffered = 0 if outbox.closed else outbox.transport_buffered()
            if not buffered:
                outbox.watched = False
                del marks[outbox]
                continue
            written = outbox.bytes_written
            if written - buffered >= upto:  # the kernel took all marked bytes
                marks[outbox] = (now, written)
            elif now - since >= self.timeout:
                outbox.watched = False
                del marks[outbox]
                self.timeouts += 1
                outbox.write_timed_out()

    def __len__(self) -> int:
        return len(self._marks)
