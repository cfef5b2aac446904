"""Channel state owned by one shard: who is subscribed, through which outbox and delivery.

Pure data, no I/O, no event loop: the shard actor is a thin shell around it.

A subscriber enters *pending*: publications for it are buffered, not written, until the
connection has written its subscribe reply (with any recovered publications) and
activates it. Activation hands back the buffered publications newer than what the
reply already carried, so the client sees each offset exactly once and in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from broker.connection.framing import WS_JSON, WS_PROTOBUF, Delivery
from broker.types import Publication

if TYPE_CHECKING:
    from broker.connection.outbox import Outbox
    from broker.shard.batch import TickBatch, WireBatch
    from broker.shard.filters import Predicate


GroupKey = tuple[Delivery, int]  # (delivery, channel id; 0 = named by the channel)


@dataclass(slots=True)
class Subscriber:
    """A connection subscribed to a channel on this shard, and how it is delivered to."""

    conn_id: str
    outbox: Outbox
    delivery: Delivery  # codec and framing of the connection's transport
    join_leave: bool = False
    buffer: list[Publication] | None = field(default_factory=list)  # None once live
    delta: bool = False  # fossil deltas negotiated (never together with a filter)
    predicate: Predicate | None = None  # tags filter; None = every publication
    # A delta subscriber holds the channel's last publication as its delta base only
    # once it has been sent one live; until then it gets publications in full.
    has_base: bool = False
    channel_id: int = 0  # channel compaction: pushes name this id, not the channel

    @property
    def binary(self) -> bool:
        """True for a protobuf connection."""
        return self.delivery.codec.binary


@dataclass(slots=True)
class Channel:
    """Subscribers of one channel, split by delivery so each is encoded and framed once.

    Plain WebSocket subscribers are in ``json`` and ``binary`` (the hot loops); those of
    every other transport, and those that negotiated channel compaction, in ``groups``,
    one dict per (``Delivery``, channel id) (SSE, HTTP stream, unidirectional ...; id 0
    = the channel's name; the node gives a channel one id while it has subscribers
    here), each fed the publication encoded and framed once for the group. Live
    subscribers with a tags filter or with deltas sit in their own groups (``filtered``,
    ``delta``), so the plain loops stay as they are. ``last`` is the previous
    publication, the delta base, kept only while the channel has delta subscribers (a
    new one starts without a base anyway). ``json_batch``/``binary_batch`` gather the
    publications of one loop iteration for the two WebSocket groups (made by the shard
    actor, which owns the loop side; see ``broker.shard.batch``); ``wire_batches`` do the
    same for the groups whose framing concatenates (Pusher, SSE, streams ...).
    """

    json: dict[str, Outbox] = field(default_factory=dict)
    binary: dict[str, Outbox] = field(default_factory=dict)
    groups: dict[GroupKey, dict[str, Outbox]] = field(default_factory=dict)
    filtered: dict[str, Subscriber] = field(default_factory=dict)
    delta: dict[str, Subscriber] = field(default_factory=dict)
    last: Publication | None = None
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    pending: dict[str, Subscriber] = field(default_factory=dict)
    publications: int = 0
    # Live subscribers that have not yet received a publication (only while journeys
    # are on): checked once per broadcast, emptied by the first one.
    awaiting_first: dict[str, None] = field(default_factory=dict)
    json_batch: TickBatch | None = None
    binary_batch: TickBatch | None = None
    # per group of ``groups`` whose framing concatenates (see ``broker.shard.batch``)
    wire_batches: dict[GroupKey, WireBatch] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.subscribers)


class ShardState:
    """Channels of one shard. Methods return what the actor must do next."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}

    def add(self, channel: str, sub: Subscriber) -> bool:
        """Register a pending subscriber; True if the channel is new to this shard
        (the node must then subscribe to it on the engine). Re-adding replaces."""
        chan = self.channels.get(channel)
        created = chan is None
        if chan is None:
            chan = self.channels[channel] = Channel()
        self._detach(chan, sub.conn_id)
        chan.subscribers[sub.conn_id] = sub
        sub.buffer = []
        chan.pending[sub.conn_id] = sub
        return created

    def activate(self, channel: str, conn_id: str, after_offset: int,
                 track_first: bool = False) -> list[Publication]:
        """Make a pending subscriber live; returns buffered publications it still needs:
        those with an offset above ``after_offset`` (all of them for offset-less ones).
        With ``track_first`` and none needed, it awaits its first publication
        (``take_first``)."""
        chan = self.channels.get(channel)
        sub = None if chan is None else chan.pending.pop(conn_id, None)
        if chan is None or sub is None:
            return []
        buffered = sub.buffer or []
        sub.buffer = None
        if sub.delta:
            sub.has_base = False
            chan.delta[conn_id] = sub
        elif sub.predicate is not None:
            chan.filtered[conn_id] = sub
        elif sub.delivery is WS_JSON and not sub.channel_id:
            chan.json[conn_id] = sub.outbox
        elif sub.delivery is WS_PROTOBUF and not sub.channel_id:
            chan.binary[conn_id] = sub.outbox
        else:
            chan.groups.setdefault((sub.delivery, sub.channel_id), {})[conn_id] = sub.outbox
        needed = [p for p in buffered if p.offset == 0 or p.offset > after_offset]
        if track_first and not needed:
            chan.awaiting_first[conn_id] = None
        return needed

    @staticmethod
    def take_first(chan: Channel, pub: Publication) -> list[str]:
        """The subscribers awaiting their first publication that ``pub`` reached (a
        tags filter may keep it from one); they await no longer."""
        got = []
        for conn_id in list(chan.awaiting_first):
            sub = chan.subscribers.get(conn_id)
            if sub is not None and sub.predicate is not None and \
                    not sub.predicate(pub.tags or {}):
                continue
            del chan.awaiting_first[conn_id]
            if sub is not None:
                got.append(conn_id)
        return got

    def remove(self, channel: str, conn_id: str) -> bool:
        """Drop a subscriber; True if the channel became empty (and was forgotten)."""
        chan = self.channels.get(channel)
        if chan is None:
            return False
        self._detach(chan, conn_id)
        if chan.subscribers:
            return False
        del self.channels[channel]
        return True

    def buffer(self, chan: Channel, pub: Publication) -> None:
        """Hold ``pub`` for subscribers that are still subscribing."""
        for sub in chan.pending.values():
            if sub.buffer is not None:
                sub.buffer.append(pub)

    def join_leave_targets(self, channel: str) -> list[Subscriber]:
        chan = self.channels.get(channel)
        if chan is None:
            return []
        return [s for s in chan.subscribers.values() if s.join_leave and s.buffer is None]

    def subscriber_count(self) -> int:
        return sum(len(c) for c in self.channels.values())

    @staticmethod
    def _detach(chan: Channel, conn_id: str) -> None:
        sub = chan.subscribers.pop(conn_id, None)
        if sub is None:  # every other map holds subscribers only: nothing to undo
            return
        if chan.groups:
            key = (sub.delivery, sub.channel_id)
            group = chan.groups.get(key)
            if group is not None:
                group.pop(conn_id, None)
                if not group:
                    del chan.groups[key]
        chan.pending.pop(conn_id, None)
        chan.awaiting_first.pop(conn_id, None)
        chan.json.pop(conn_id, None)
        chan.binary.pop(conn_id, None)
        chan.filtered.pop(conn_id, None)
        chan.delta.pop(conn_id, None)
