"""Outbox: a connection's bounded queue of encoded frames, flushed once per loop iteration.

The shard that owns a channel writes a publication's pre-encoded frame straight into each
subscriber's outbox (no actor message per subscriber). Whatever arrives for one
connection during one loop iteration leaves in a single WebSocket message and a single
``transport.write``: the per-write syscall is the floor, so coalescing is where the
throughput is. A lone frame goes out as the WebSocket frame the shard built once for all
subscribers, with no per-delivery allocation.

Resource handling:
    An outbox holds at most ``max_bytes`` of frames not yet accepted by the kernel
    (its own pending frames plus the transport's write buffer). Past that the connection
    is a slow consumer: ``on_overflow`` is called once, the outbox closes and drops all
    further frames, so a reader that stopped reading can never grow the heap.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def ws_header(length: int, binary: bool) -> bytes:
    """The header of one unmasked, final WebSocket data frame (server to client)."""
    first = 0x82 if binary else 0x81
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return _HEADER_16.pack(first, 126, length)
    return _HEADER_64.pack(first, 127, length)


def ws_frame(payload: bytes, binary: bool) -> bytes:
    """A complete WebSocket data frame carrying ``payload``."""
    return ws_header(len(payload), binary) + payload


@dataclass(slots=True)
class OutboxStats:
    frames: int = 0
    bytes: int = 0
    writes: int = 0
    peak_pending: int = 0


class FlushScheduler:
    """Flushes every outbox that received frames, once, at the end of the loop iteration.

    One ``call_soon`` per iteration for the whole node instead of one per connection.
    """

    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Outbox] = []
        self._scheduled = False

    def mark(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush_all)

    def flush_all(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._scheduled = False
        for outbox in dirty:
            outbox.flush()


class Outbox:
    """Encoded frames waiting for one connection's socket.

    ``push`` is the hot path: one list append, a byte count and (first frame of the
    iteration only) a mark on the scheduler.
    """

    __slots__ = (
        "_first_wire",
        "_frames",
        "_join",
        "_pending",
        "_scheduler",
        "_transport",
        "binary",
        "closed",
        "max_bytes",
        "on_overflow",
        "stats",
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
    ) -> None:
        self._transport: asyncio.WriteTransport = transport  # type: ignore[assignment]
        self._scheduler = scheduler
        self._join = join
        self._frames: list[bytes] = []
        self._first_wire: bytes | None = None
        self._pending = 0
        self.binary = binary
        self.max_bytes = max_bytes
        self.on_overflow = on_overflow
        self.closed = False
        self.stats = OutboxStats()

    def push(self, frame: bytes, wire: bytes | None = None) -> None:
        """Queue one encoded reply/push. ``wire`` is ``frame`` already wrapped as a
        WebSocket frame (shared by all subscribers of a broadcast), if the caller has it.
        """
        if self.closed:
            return
        frames = self._frames
        if not frames:
            self._first_wire = wire
            self._scheduler.mark(self)
        frames.append(frame)
        self._pending += len(frame)
        if self._pending > self.max_bytes:
            self._overflow()

    @property
    def pending_bytes(self) -> int:
        """Bytes queued here plus bytes the transport has not handed to the kernel yet."""
        return self._pending + self._transport.get_write_buffer_size()

    def flush(self) -> None:
        """Write everything queued as one WebSocket message (idempotent when empty)."""
        frames = self._frames
        if not frames or self.closed:
            return
        transport = self._transport
        if transport.is_closing():
            self._frames = []
            self._pending = 0
            return
        stats = self.stats
        if len(frames) == 1:
            wire = self._first_wire
            if wire is None:
                wire = ws_frame(frames[0], self.binary)
        else:
            payload = self._join(frames)
            wire = ws_header(len(payload), self.binary) + payload
        stats.frames += len(frames)
        stats.bytes += len(wire)
        stats.writes += 1
        self._frames = []
        self._pending = 0
        transport.write(wire)
        buffered = transport.get_write_buffer_size()
        if buffered > stats.peak_pending:
            stats.peak_pending = buffered
            if buffered > self.max_bytes:
                self._overflow()

    def close(self) -> None:
        """Drop whatever is queued; later pushes are ignored."""
        self.closed = True
        self._frames = []
        self._pending = 0

    def _overflow(self) -> None:
        if not self.closed:
            self.close()
            self.on_overflow()
