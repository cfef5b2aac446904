"""Outbox: a connection's bounded queue of encoded frames, flushed once per loop iteration.

The shard that owns a channel writes a publication's pre-encoded frame straight into each
subscriber's outbox (no actor message per subscriber). The first frame a connection gets
in a loop iteration goes to its transport at once, as the wire bytes the shard framed
once for all subscribers of its delivery group (a WebSocket frame, an SSE event, a line
of an HTTP stream); whatever follows in the same iteration is coalesced by the
connection's framing (``broker.connection.framing``) into a single ``transport.write``
when the iteration ends (``broker.connection.ticks``). The per-write syscall is the
floor, so under load coalescing is where the throughput is. The outbox itself knows no
transport: it writes bytes to an asyncio write transport, framed by the framing it was
given (WebSocket by default).

Resource handling:
    An outbox holds at most ``max_bytes`` of frames not yet accepted by the kernel
    (its own pending frames plus the transport's write buffer). Past that the connection
    is a slow consumer: ``on_overflow`` is called once, the outbox closes and drops all
    further frames, so a reader that stopped reading can never grow the heap. Bytes that
    wait in the transport longer than ``websocket.write_timeout`` close it too
    (``on_write_timeout``, see :mod:`broker.connection.writewatch`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.connection.writewatch import WriteWatch

from broker.connection.framing import Framing, WsFraming
from broker.connection.ticks import Batch, FlushScheduler
from broker.connection.wsframe import ws_frame, ws_header

__all__ = ["Batch", "FlushScheduler", "Outbox", "OutboxStats", "WireOutbox", "broadcast",
           "new_outbox", "ws_frame", "ws_header"]


@dataclass(slots=True)
class OutboxStats:
    """Counters of an outbox (frames, bytes, writes, peak pending)."""

    frames: int = 0
    bytes: int = 0
    writes: int = 0
    peak_pending: int = 0


class Outbox:
    """Encoded frames waiting for one connection's socket.

    The first frame of a tick goes straight to the transport (for a broadcast: the
    wire bytes framed once for every subscriber of the group — no allocation per
    delivery). Frames that follow within the same tick are queued and leave together,
    framed by ``framing.many`` (one WebSocket message, or consecutive events or lines)
    in one write, when the tick ends. A paced stream therefore costs
    one write per delivery, like a bare server, and a burst coalesces; while the node is
    in a burst (``FlushScheduler.busy``) the first frame waits too.
    """

    __slots__ = (
        "_first_wire",
        "_frames",
        "_many",
        "_one",
        "_pending",
        "_scheduler",
        "_tick",
        "_transport",
        "_watch",
        "binary",
        "bytes_out",
        "closed",
        "direct_writes",
        "frames_out",
        "max_bytes",
        "on_overflow",
        "on_write_timeout",
        "peak_pending",
        "watched",
        "writes_out",
    )

    def __init__(
        self,
        transport: asyncio.BaseTransport,
        scheduler: FlushScheduler,
        *,
        binary: bool,
        join: Callable[[Sequence[bytes]], bytes],
        max_bytes: int,
        on_overflow: Callable[[], None],
        watch: WriteWatch | None = None,
        on_write_timeout: Callable[[], None] | None = None,
        framing: Framing | None = None,
    ) -> None:
        """``framing`` wraps frames for the transport; None: a WebSocket framing of
        ``binary`` messages whose frames are joined by ``join``."""
        self._transport: asyncio.WriteTransport = transport  # type: ignore[assignment]
        self._scheduler = scheduler
        if framing is None:
            framing = WsFraming(binary, join)
        self._one = framing.one
        self._many = framing.many
        self._frames: list[bytes] = []
        self._first_wire: bytes | None = None
        self._pending = 0
        self._tick = -1
        self.binary = binary
        self.max_bytes = max_bytes
        self.on_overflow = on_overflow
        self._watch = watch
        self.on_write_timeout = on_write_timeout
        self.watched = False  # registered with the write watch
        self.closed = False
        # Counters as plain slots (not an object): they are bumped on every write.
        # ``direct_writes``: single frames written straight through (one frame, one
        # write each); ``frames_out``/``writes_out``: everything else.
        self.direct_writes = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.writes_out = 0
        self.peak_pending = 0

    @property
    def stats(self) -> OutboxStats:
        """A snapshot of the counters (frames, bytes, writes, peak transport buffer)."""
        direct = self.direct_writes
        return OutboxStats(self.frames_out + direct, self.bytes_out,
                           self.writes_out + direct, self.peak_pending)

    def push(self, frame: bytes, wire: bytes | None = None) -> None:
        """Send one encoded reply/push. ``wire`` is ``frame`` already framed for this
        outbox's transport (shared by all subscribers of a broadcast), if the caller has it.
        """
        # The per-delivery path of a paced broadcast: as few lookups as a bare loop of
        # ``transport.write`` calls allows; everything unusual goes to ``_hold``.
        if self._frames:  # already queued this tick: keep the order, coalesce
            self._frames.append(frame)
            self._pending += len(frame)
            if self._pending > self.max_bytes:
                self._overflow()
            return
        scheduler = self._scheduler
        tick = scheduler.tick
        if self._tick == tick or scheduler.busy or self.closed:
            self._hold(frame, wire)
            return
        self._tick = tick  # first this tick: out now
        if not scheduler.scheduled:
            scheduler.touch()
        if wire is None:
            wire = self._one(frame)
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(wire)
        self.direct_writes += 1
        self.bytes_out += len(wire)
        buffered = transport.get_write_buffer_size()
        if buffered:  # the kernel did not take it all; the common case skips this
            self._backlogged(buffered)

    def _hold(self, frame: bytes, wire: bytes | None) -> None:
        """Queue the first frame of a tick (unless closed) for the end of the tick."""
        if self.closed:
            return
        self._first_wire = wire
        self._frames.append(frame)
        self._pending = len(frame)
        self._scheduler.mark(self)

    def push_many(self, frames: list[bytes], wire: bytes, size: int) -> None:
        """Send ``frames`` (``size`` bytes in all), whose wire bytes for this transport
        are ``wire`` (built once for every member of a batch). Behind frames already
        queued here they are queued too (order, and still one write); else written now.
        """
        if self.closed:
            return
        queued = self._frames
        if queued:
            queued.extend(frames)
            self._pending += size
            if self._pending > self.max_bytes:
                self._overflow()
            return
        self._tick = self._scheduler.tick
        self._write(wire, len(frames))

    @property
    def pending_bytes(self) -> int:
        """Bytes queued here plus bytes the transport has not handed to the kernel yet."""
        return self._pending + self._transport.get_write_buffer_size()

    def flush(self) -> int:
        """Write everything queued in one write; returns how many frames."""
        frames = self._frames
        if not frames or self.closed:
            return 0
        if len(frames) == 1:
            wire = self._first_wire
            if wire is None:
                wire = self._one(frames[0])
        else:
            wire = self._many(frames)
        self._frames = []
        self._pending = 0
        self._first_wire = None
        self._tick = self._scheduler.tick
        self._write(wire, len(frames))
        return len(frames)

    def _write(self, wire: bytes, count: int) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(wire)
        self.frames_out += count
        self.bytes_out += len(wire)
        self.writes_out += 1
        buffered = transport.get_write_buffer_size()
        if buffered:  # the kernel did not take it all; the common case skips this
            self._backlogged(buffered)

    def _backlogged(self, buffered: int) -> None:
        if buffered > self.peak_pending:
            self.peak_pending = buffered
            if buffered > self.max_bytes:
                self._overflow()
                return
        if not self.watched and self._watch is not None:
            self._watch.add(self)

    # -- for the write watch -----------------------------------------------------------
    @property
    def bytes_written(self) -> int:
        return self.bytes_out

    def transport_buffered(self) -> int:
        return self._transport.get_write_buffer_size()

    def write_timed_out(self) -> None:
        """Bytes waited in the transport past ``websocket.write_timeout``: close, and
        tell the connection (once)."""
        if not self.closed:
            self.close()
            if self.on_write_timeout is not None:
                self.on_write_timeout()

    def close(self) -> None:
        """Drop whatever is queued; later pushes are ignored."""
        self.closed = True
        self._frames = []
        self._pending = 0

    def _overflow(self) -> None:
        if not self.closed:
            self.close()
            self.on_overflow()


def broadcast(outboxes: Iterable[Outbox], frame: bytes, wire: bytes, tick: int) -> None:
    """``Outbox.push(frame, wire)`` to each of ``outboxes``, for a shard that has found
    the node outside a burst in tick ``tick`` and made sure the tick ends (``touch``).

    The per-delivery path of a paced broadcast, written as one loop so a delivery costs
    the outbox's own state, the write and three counters: no call per outbox, no
    scheduler lookups (hoisted per group). Anything unusual (a frame already written or
    queued this tick, a closed outbox) takes ``push``.
    """
    size = len(wire)
    for outbox in outboxes:
        if outbox._tick == tick or outbox._frames or outbox.closed:
            outbox.push(frame, wire)
            continue
        outbox._tick = tick
        transport = outbox._transport
        if transport.is_closing():
            continue
        transport.write(wire)
        outbox.direct_writes += 1
        outbox.bytes_out += size
        buffered = transport.get_write_buffer_size()
        if buffered:  # the kernel did not take it all; the common case skips this
            outbox._backlogged(buffered)


class WireOutbox(Outbox):
    """An outbox for a framing that ``concatenates`` (one WebSocket message per event,
    as Pusher and the unidirectional WebSocket want; SSE events; stream lines).

    It queues wire bytes, not frames: a broadcast's ``wire`` is the group's bytes framed
    once by the shard, so queueing one is a list append of a shared object, and the end
    of a tick joins them into one ``transport.write`` — one copy, no framing per
    subscriber. Only a frame pushed without its wire (a reply, a member event) is
    framed here, once. Everything else (first frame of a tick out at once, busy ticks,
    the byte bound, overflow) is ``Outbox``'s.
    """

    __slots__ = ()

    def push(self, frame: bytes, wire: bytes | None = None) -> None:
        if wire is None:
            wire = self._one(frame)
        if self._frames:  # already queued this tick: keep the order, coalesce
            self._frames.append(wire)
            self._pending += len(wire)
            if self._pending > self.max_bytes:
                self._overflow()
            return
        scheduler = self._scheduler
        tick = scheduler.tick
        if self._tick == tick or scheduler.busy or self.closed:
            if not self.closed:  # the first of a tick waits for its end
                self._frames.append(wire)
                self._pending = len(wire)
                scheduler.mark(self)
            return
        self._tick = tick  # first this tick: out now
        if not scheduler.scheduled:
            scheduler.touch()
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(wire)
        self.direct_writes += 1
        self.bytes_out += len(wire)
        buffered = transport.get_write_buffer_size()
        if buffered:  # the kernel did not take it all; the common case skips this
            self._backlogged(buffered)

    def push_many(self, frames: list[bytes], wire: bytes, size: int) -> None:
        if self.closed:
            return
        if self._frames:  # behind what is queued, as one more wire
            self._frames.append(wire)
            self._pending += len(wire)
            if self._pending > self.max_bytes:
                self._overflow()
            return
        self._tick = self._scheduler.tick
        self._write(wire, len(frames))

    def flush(self) -> int:
        wires = self._frames
        if not wires or self.closed:
            return 0
        self._frames = []
        self._pending = 0
        self._tick = self._scheduler.tick
        self._write(wires[0] if len(wires) == 1 else b"".join(wires), len(wires))
        return len(wires)


def new_outbox(transport: asyncio.BaseTransport, scheduler: FlushScheduler, *,
               framing: Framing, binary: bool, join: Callable[[Sequence[bytes]], bytes],
               max_bytes: int, on_overflow: Callable[[], None],
               watch: WriteWatch | None = None,
               on_write_timeout: Callable[[], None] | None = None) -> Outbox:
    """The outbox for ``framing``: a ``WireOutbox`` where its frames concatenate, else an
    ``Outbox`` (the joined WebSocket message of the bidirectional protocols)."""
    cls = WireOutbox if framing.concatenates else Outbox
    return cls(transport, scheduler, binary=binary, join=join, max_bytes=max_bytes,
               on_overflow=on_overflow, watch=watch, on_write_timeout=on_write_timeout,
               framing=framing)
