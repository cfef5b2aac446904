"""Tick batches: a channel's publications of one loop iteration, framed once for all.

Under a burst several publications of one channel reach its shard in the same loop
iteration ("tick"). Pushed one by one, each costs one outbox call per subscriber, and
every outbox then joins its own copy of the same frames. A ``TickBatch`` instead keeps
the frames of one WebSocket group (a channel's JSON or protobuf subscribers) for the
tick; when the tick ends it joins them into one message once and hands the same wire
bytes to every member (``Outbox.push_many``): per subscriber one call and one write per
tick, whatever the number of publications.

The first publication of a tick still goes straight out (a paced stream costs one write
per delivery, like a bare server); only what follows within the tick, or everything
while the node is in a burst (``FlushScheduler.busy``), is batched.

Ordering: frames keep their publication order within the batch. A member whose outbox
already holds queued frames gets the batch appended behind them (one write, in order).
The shard flushes a channel's batch before the channel's membership grows (a subscriber
going live), so a new member never gets a publication its subscribe reply or replay
already carried.

Groups whose framing *concatenates* (Pusher, unidirectional WebSocket, SSE, HTTP
streams: every event its own message, line or event) batch the same way with a
``WireBatch``: the wire bytes each publication was framed into once for the group are
joined once per tick, and that one ``bytes`` goes to every member (``WireOutbox``
queues it behind its own frames, or writes it at once). A publication that must not
reach one socket (a Pusher client event, a trigger with ``socket_id``) is recorded with
that socket: the shared bytes never go to it; it gets its own join of the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.connection.framing import WS_JSON, WS_PROTOBUF
from broker.connection.outbox import broadcast
from broker.protocol import JSON_CODEC, PROTOBUF_CODEC, encode_publication_push

if TYPE_CHECKING:
    from broker.connection.framing import Framing
    from broker.connection.outbox import FlushScheduler, Outbox
    from broker.shard.state import Channel, GroupKey
    from broker.types import Publication

__all__ = ["TickBatch", "WireBatch", "deliver_websocket", "flush_batches"]


def deliver_websocket(chan: Channel, channel: str, pub: Publication,
                      scheduler: FlushScheduler) -> None:
    """``pub`` to the channel's plain WebSocket subscribers (``chan.json``,
    ``chan.binary``): encoded once per format; straight out if it is the channel's first
    of the tick (``outbox.broadcast``), else into the group's tick batch."""
    if chan.json:
        batch = chan.json_batch
        if batch is None:
            batch = chan.json_batch = TickBatch(chan.json, WS_JSON.framing, scheduler)
        batch.send(encode_publication_push(JSON_CODEC, channel, pub))
    if chan.binary:
        batch = chan.binary_batch
        if batch is None:
            batch = chan.binary_batch = TickBatch(chan.binary, WS_PROTOBUF.framing, scheduler)
        batch.send(encode_publication_push(PROTOBUF_CODEC, channel, pub))


def flush_batches(chan: Channel | None) -> None:
    """Write the channel's batched publications now, to its current members: call it
    before a subscriber goes live (it got them in its buffer or its reply)."""
    if chan is not None:
        for batch in (chan.json_batch, chan.binary_batch):
            if batch is not None:
                batch.flush()
        if chan.wire_batches:
            for wire_batch in chan.wire_batches.values():
                wire_batch.flush()


class TickBatch:
    """The frames one group of one channel got during this tick, and who gets them."""

    __slots__ = ("_framing", "_members", "_scheduler", "frames", "size", "tick")

    def __init__(self, members: dict[str, Outbox], framing: Framing,
                 scheduler: FlushScheduler) -> None:
        self._members = members  # the channel's live dict: membership at flush time
        self._framing = framing
        self._scheduler = scheduler
        self.frames: list[bytes] = []
        self.size = 0
        self.tick = -1  # the tick in which the group last wrote a frame straight out

    def direct(self) -> int:
        """The current tick if a frame arriving now may go straight to every member's
        outbox (the first of this tick, outside a burst, nothing batched; the tick is
        then sure to end, see ``Outbox.send``), else -1. Records that it went."""
        scheduler = self._scheduler
        tick = scheduler.tick
        if self.frames or scheduler.busy or self.tick == tick:
            return -1
        self.tick = tick
        scheduler.touch()
        return tick

    def send(self, frame: bytes) -> None:
        """``frame`` to every member: now if it is the first of the tick, else batched."""
        tick = self.direct()
        if tick >= 0:
            broadcast(self._members.values(), frame, self._framing.one(frame), tick)
        else:
            self.add(frame)

    def add(self, frame: bytes) -> None:
        """Batch ``frame`` for the end of this tick."""
        if not self.frames:
            self._scheduler.defer(self)
        self.frames.append(frame)
        self.size += len(frame)

    def flush(self) -> int:
        """Write the batch to every current member; returns how many frames it held.

        Error handling: a member whose outbox overflows is closed by it; its connection
        may leave the channel during this loop, so the loop runs over a copy.
        """
        frames = self.frames
        if not frames:
            return 0
        self.frames, size, self.size = [], self.size, 0
        framing = self._framing
        wire = framing.one(frames[0]) if len(frames) == 1 else framing.many(frames)
        for outbox in list(self._members.values()):
            outbox.push_many(frames, wire, size)
        return len(frames)


class WireBatch:
    """The wire bytes one concatenating group (``(delivery, channel id)``) of one channel
    got during this tick, and the sockets some of them must skip.

    Same rules as ``TickBatch``: the first publication of a tick goes straight out
    (outside a burst), the rest wait for the end of the tick, and membership is read
    at flush time (from the channel's live ``groups``; the group may be gone).
    """

    __slots__ = ("_groups", "_key", "_scheduler", "skips", "tick", "wires")

    def __init__(self, groups: dict[GroupKey, dict[str, Outbox]], key: GroupKey,
                 scheduler: FlushScheduler) -> None:
        self._groups = groups
        self._key = key
        self._scheduler = scheduler
        self.wires: list[bytes] = []
        self.skips: list[tuple[int, str]] = []  # (index in wires, socket it must skip)
        self.tick = -1

    def direct(self) -> int:
        """As ``TickBatch.direct``: the current tick if a wire arriving now may go
        straight out (recorded), else -1."""
        scheduler = self._scheduler
        tick = scheduler.tick
        if self.wires or scheduler.busy or self.tick == tick:
            return -1
        self.tick = tick
        scheduler.touch()
        return tick

    def send(self, outboxes: dict[str, Outbox], frame: bytes, wire: bytes,
             skip: str | None) -> int:
        """``frame`` (``wire`` for this group) to every member but ``skip``: now if it
        is the first of the tick, else batched. Returns how many members it is for."""
        count = len(outboxes)
        skipped = skip is not None and skip in outboxes
        if skipped:
            count -= 1
        tick = self.direct()
        if tick < 0:
            if not self.wires:
                self._scheduler.defer(self)
            if skipped:
                self.skips.append((len(self.wires), skip))  # type: ignore[arg-type]
            self.wires.append(wire)
        elif skipped:
            broadcast([o for c, o in outboxes.items() if c != skip], frame, wire, tick)
        else:
            broadcast(outboxes.values(), frame, wire, tick)
        return count

    def flush(self) -> int:
        """Write the batch to every current member: one join for all, and one of its
        own for a member that some of the wires skip. Returns how many wires it held.

        Error handling: as ``TickBatch.flush`` (a member may be closed by its outbox
        overflowing and leave during the loop, so the loop runs over a copy).
        """
        wires = self.wires
        if not wires:
            return 0
        skips = self.skips
        self.wires, self.skips = [], []
        outboxes = self._groups.get(self._key)
        if not outboxes:
            return len(wires)
        wire = wires[0] if len(wires) == 1 else b"".join(wires)
        size = len(wire)
        if not skips:
            for outbox in list(outboxes.values()):
                outbox.push_many(wires, wire, size)
            return len(wires)
        skipped: dict[str, set[int]] = {}
        for index, conn_id in skips:
            skipped.setdefault(conn_id, set()).add(index)
        for conn_id, outbox in list(outboxes.items()):
            left_out = skipped.get(conn_id)
            if left_out is None:
                outbox.push_many(wires, wire, size)
                continue
            own = [w for i, w in enumerate(wires) if i not in left_out]
            if own:
                joined = b"".join(own)
                outbox.push_many(own, joined, len(joined))
        return len(wires)
