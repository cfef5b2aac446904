"""Channel shard actor: owns the subscribers of the channels that hash to it, and fans out.

A publication reaches the shard as one ``Deliver`` message. The shard encodes it once per
wire format in use (JSON, protobuf), wraps each in a WebSocket frame once, and pushes the
same bytes into every subscriber's outbox: per subscriber that is one method call and a
list append. Subscribers of the other transports (SSE, HTTP streaming, unidirectional)
sit in one group per ``Delivery`` (codec and framing), and so do subscribers that
negotiated channel compaction (one group per delivery and channel id; the node gives a
channel one id while it has subscribers here): the publication is encoded once per
(codec, channel id) and framed once per group (``_deliver_groups``), after the
WebSocket loops.

Subscribers with a tags filter or with fossil deltas are kept apart (``Channel.filtered``,
``Channel.delta``) so that loop stays as it is: a filtered one is tested per publication
and shares its format's frame; delta ones share one delta (against the channel's previous
publication) per format, and one that holds no base yet gets the publication in full.

The shard owns its channels' cache state too: a fresh ``ShardL1`` per incarnation (its
L1 window, its write-behind buffer, the channels it follows on the engine), attached to
the node's CacheLayer on start and detached on every ending. What runs in the background
for it is its own: the prewarm of its hottest channels and the write-behind flushes are
its effects, refresh-ahead ticks are its timer; all of it ends with the incarnation.

Failure policy: a shard is a permanent child of the shard supervisor. A restarted shard
starts empty (its L1 and unflushed write-behind publications are gone, counted as lost)
and has every connection re-register its subscriptions to channels of this shard. A
graceful stop first flushes its write-behind buffer.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from actors import Actor
from broker.cache.shard_l1 import ShardL1
from broker.connection.framing import Delivery
from broker.connection.ticks import FlushScheduler
from broker.journal.record import first_publications
from broker.names import connection_id
from broker.protocol import Codec, encode_publication_push
from broker.protocol.fossil import create_delta, is_utf8
from broker.shard.batch import WireBatch, deliver_websocket, flush_batches
from broker.shard.messages import (
    Activate,
    ChannelSummary,
    Deliver,
    DeliverJoinLeave,
    Resync,
    Subscribe,
    Unsubscribe,
)
from broker.shard.state import Channel, ShardState, Subscriber
from broker.types import Publication
from broker.wire import client_info_dict, publication_dict

if TYPE_CHECKING:
    from broker.node import Node

Frames = tuple[bytes, bytes]  # (protocol frame, framed wire bytes) as Outbox.push takes


log = logging.getLogger("chorus.shard")

# The tag naming a socket a publication skips (broker.pusher.codec.SOCKET_TAG).
SKIP_TAG = "pusher_socket"


def shard_index(channel: str, count: int) -> int:
    """Which shard owns ``channel`` (stable across processes and restarts)."""
    return zlib.crc32(channel.encode()) % count


@dataclass(slots=True)
class _FlushDue:
    """The write-behind buffer is due to flush."""

    delay: float


@dataclass(slots=True)
class _RefreshTick:
    """Time to refresh the shard's cached channels."""


class ShardActor(Actor):
    kind = "shard"

    def __init__(self, index: int, node: Node) -> None:
        self.index = index
        self.node = node
        self.state = ShardState()
        self.l1: ShardL1 = node.cache.new_l1(index, self._arm_flush)
        self._refreshing: Any = None

    # -- lifecycle --------------------------------------------------------------------
    def on_start(self) -> None:
        layer = self.node.cache
        layer.attach(self.l1)
        if self.node.shard_started(self.index):
            log.warning("shard %d restarted: connections re-register their channels",
                        self.index)
            from broker.connection.commands import Resubscribe

            for client_id in list(self.node.connections):
                self.tell(connection_id(client_id), Resubscribe(self.index))
        layer.warm.start(self.index, lambda coro: self.run_effect(coro, on_error=self._bg_error))
        if layer.refresher.active:
            self.start_timer(layer.refresher.interval, _RefreshTick(), repeat=True)

    def on_stop_requested(self, reason: str) -> bool:
        if not len(self.l1.buffer):
            return True
        # A graceful stop writes what write-behind acknowledged before the shard goes.
        self.run_effect(self.node.cache.flush(self.l1, 0.05),
                        on_result=lambda _: self.stop(), on_error=lambda _: self.stop())
        return False

    def on_stop(self) -> None:
        self.node.cache.detach(self.l1)

    def on_failure(self, error: BaseException) -> None:
        self.node.cache.detach(self.l1)

    def on_kill(self, reason: str) -> None:
        self.node.cache.detach(self.l1)

    def _arm_flush(self, delay: float) -> None:
        self.start_timer(delay, _FlushDue(delay))

    def _bg_error(self, error: BaseException) -> None:
        log.warning("shard %d: background cache work failed: %r", self.index, error)

    def receive(self, message: Any) -> Any:
        if type(message) is Deliver:
            self._deliver(message.channel, message.pub)
        elif isinstance(message, Subscribe):
            sub = Subscriber(message.conn_id, message.outbox, message.delivery,
                             message.join_leave, delta=message.delta,
                             predicate=message.predicate, channel_id=message.channel_id)
            if self.state.add(message.channel, sub):
                self._follow(message.channel)
            if message.live:
                self._activate(message.channel, message.conn_id, message.after_offset,
                               message.track_first)
        elif isinstance(message, Activate):
            self._activate(message.channel, message.conn_id, message.after_offset,
                           message.track_first)
        elif isinstance(message, Unsubscribe):
            if self.state.remove(message.channel, message.conn_id):
                self.l1.unfollow(message.channel)
                self.run_effect(self.node.engine.unsubscribe(message.channel),
                                on_error=self._engine_error)
        elif isinstance(message, DeliverJoinLeave):
            self._deliver_join_leave(message)
        elif isinstance(message, Resync):
            chan = self.state.channels.get(message.channel)
            for conn_id in list(chan.subscribers) if chan is not None else []:
                self.tell(connection_id(conn_id), message)
        elif isinstance(message, ChannelSummary):
            return {name: len(chan) for name, chan in self.state.channels.items()}
        elif isinstance(message, _FlushDue):
            self.run_effect(self.node.cache.flush(self.l1, message.delay),
                            on_error=self._bg_error)
        elif isinstance(message, _RefreshTick):
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = self.run_effect(
                    self.node.cache.refresher.refresh(self.l1), on_error=self._bg_error)
        else:
            return super().receive(message)
        return None

    def _deliver(self, channel: str, pub: Publication) -> None:
        chan = self.state.channels.get(channel)
        if chan is None:
            return
        chan.publications += 1
        if chan.pending:
            self.state.buffer(chan, pub)
        if chan.json or chan.binary:  # the hot loops (see broker.shard.batch)
            deliver_websocket(chan, channel, pub, self.node.scheduler)
        delivered = len(chan.json) + len(chan.binary)
        if chan.groups:
            delivered += self._deliver_groups(chan, channel, pub, self.node.scheduler)
        if chan.filtered:
            delivered += self._deliver_filtered(chan, channel, pub)
        if chan.delta:
            delivered += self._deliver_delta(chan, channel, pub)
        if chan.awaiting_first:  # once per subscription, not per delivery (journeys)
            first_publications(self.node, channel, self.state.take_first(chan, pub))
        self.node.metrics_delivered(delivered, channel)

    @staticmethod
    def _deliver_groups(chan: Channel, channel: str, pub: Publication,
                        scheduler: FlushScheduler) -> int:
        """Push ``pub`` to the subscribers of the non-WebSocket deliveries and to those
        that negotiated channel compaction: encoded once per (codec, channel id), framed
        once per delivery (an SSE event, a stream line ...), the same bytes for every
        subscriber of a group; a group whose framing concatenates (Pusher, SSE, ...)
        through its tick batch (``WireBatch``). Returns how many got it."""
        encoded: dict[tuple[Codec, int], bytes] = {}
        count = 0
        # A Pusher client event or a trigger with ``socket_id``: not to that socket.
        skip = pub.tags.get(SKIP_TAG) if pub.tags else None
        batches = chan.wire_batches
        for (delivery, channel_id), outboxes in chan.groups.items():
            codec = delivery.codec
            frame = encoded.get((codec, channel_id))
            if frame is None:
                frame = encoded[(codec, channel_id)] = encode_publication_push(
                    codec, channel, pub, channel_id)
            wire = delivery.framing.one(frame)
            if delivery.framing.concatenates:  # WireOutboxes: batched per tick
                batch = batches.get((delivery, channel_id))
                if batch is None:
                    batch = batches[(delivery, channel_id)] = WireBatch(
                        chan.groups, (delivery, channel_id), scheduler)
                count += batch.send(outboxes, frame, wire, skip)
                continue
            # One delivery, one outbox class (Outbox) for the whole group.
            push = type(next(iter(outboxes.values()))).push
            if skip is not None and skip in outboxes:
                for conn_id, outbox in outboxes.items():
                    if conn_id != skip:
                        push(outbox, frame, wire)
                count += len(outboxes) - 1
                continue
            for outbox in outboxes.values():
                push(outbox, frame, wire)
            count += len(outboxes)
        return count

    @staticmethod
    def _deliver_filtered(chan: Channel, channel: str, pub: Publication) -> int:
        """Push ``pub`` to the filtered subscribers whose filter matches its tags; each
        (codec, channel id) is encoded and each delivery framed at most once. Returns how
        many got it."""
        tags = pub.tags or {}
        frames: dict[tuple[Delivery, int], Frames] = {}
        count = 0
        for sub in chan.filtered.values():
            predicate = sub.predicate
            if predicate is not None and not predicate(tags):
                continue
            key = (sub.delivery, sub.channel_id)
            pair = frames.get(key)
            if pair is None:
                frame = encode_publication_push(sub.delivery.codec, channel, pub,
                                                sub.channel_id)
                pair = frames[key] = (frame, sub.delivery.framing.one(frame))
            sub.outbox.push(*pair)
            count += 1
        return count

    @staticmethod
    def _deliver_delta(chan: Channel, channel: str, pub: Publication) -> int:
        """Push ``pub`` to the delta subscribers: when it was published with delta
        (``pub.delta``), as a fossil delta against the channel's previous publication to
        those that hold it; in full to the others, to all when it was not published with
        delta (as Centrifugo) or when the delta would not be smaller. The delta is
        computed once and each (delivery, delta or full, channel id) frame encoded at
        most once."""
        prev, chan.last = chan.last, pub
        patch = None
        if pub.delta and prev is not None and any(sub.has_base for sub in chan.delta.values()):
            patch = create_delta(prev.data, pub.data)
            if len(patch) >= len(pub.data):
                patch = None
        # JSON clients get the delta inside a JSON string: it must be valid UTF-8.
        json_patch = patch if patch is not None and is_utf8(patch) else None
        frames: dict[tuple[Delivery, bool, int], Frames] = {}
        for sub in chan.delta.values():
            use_delta = sub.has_base and (patch if sub.binary else json_patch) is not None
            key = (sub.delivery, use_delta, sub.channel_id)
            pair = frames.get(key)
            if pair is None:
                pair = frames[key] = delta_push(
                    channel, pub, patch if use_delta else None, sub.delivery, sub.channel_id)
            sub.outbox.push(*pair)
            sub.has_base = True
        return len(chan.delta)

    def _deliver_one(self, channel: str, pub: Publication, conn_id: str) -> None:
        chan = self.state.channels.get(channel)
        sub = None if chan is None else chan.subscribers.get(conn_id)
        if sub is None or (sub.predicate is not None and not sub.predicate(pub.tags or {})):
            return
        if pub.tags and pub.tags.get(SKIP_TAG) == conn_id:
            return
        if sub.delta:  # in full; it sets no base (``has_base`` stays as activation left it)
            sub.outbox.push(delta_push(channel, pub, None, sub.delivery, sub.channel_id)[0])
            return
        sub.outbox.push(encode_publication_push(sub.delivery.codec, channel, pub,
                                                sub.channel_id))

    def _deliver_join_leave(self, message: DeliverJoinLeave) -> None:
        targets = self.state.join_leave_targets(message.channel)
        if not targets:
            return
        key = "join" if message.join else "leave"
        event = {key: {"info": client_info_dict(message.info)}}
        frames: dict[tuple[Codec, int], bytes] = {}
        subject = message.info.client
        for sub in targets:
            codec = sub.delivery.codec
            if sub.conn_id == subject and codec.name == "pusher":
                continue  # Pusher never tells a socket of its own member_added/removed
            frame = frames.get((codec, sub.channel_id))
            if frame is None:
                where = {"id": sub.channel_id} if sub.channel_id else {"channel": message.channel}
                frame = frames[(codec, sub.channel_id)] = codec.encode_reply(
                    {"push": {**where, **event}})
            sub.outbox.push(frame)

    def _activate(self, channel: str, conn_id: str, after_offset: int,
                  track_first: bool) -> None:
        flush_batches(self.state.channels.get(channel))  # before it grows
        buffered = self.state.activate(channel, conn_id, after_offset, track_first)
        for pub in buffered:
            self._deliver_one(channel, pub, conn_id)
        if buffered and track_first:
            first_publications(self.node, channel, [conn_id])

    def _follow(self, channel: str) -> None:
        """Subscribe on the engine; once confirmed (and still wanted) L1 follows the
        channel and may answer for it (see CacheLayer.authoritative)."""
        generation = self.node.cache.link_generation()

        def confirmed(_: object) -> None:
            if channel in self.state.channels:
                self.l1.follow(channel, generation)

        self.run_effect(self.node.engine.subscribe(channel), on_result=confirmed,
                        on_error=self._engine_error)

    def _engine_error(self, error: BaseException) -> None:
        log.warning("shard %d: engine subscription failed: %r", self.index, error)


def delta_data(data: bytes, binary: bool) -> bytes:
    """Publication data as a delta-negotiated subscriber gets it: protobuf as is, JSON
    inside a JSON string (the SDKs parse it after applying any delta)."""
    if binary:
        return data
    return orjson.dumps(data.decode("utf-8", errors="replace"))


def delta_push(channel: str, pub: Publication, patch: bytes | None,
               delivery: Delivery, channel_id: int = 0) -> Frames:
    """The push of ``pub`` for a delta subscriber: ``patch`` with ``delta: true`` when
    given, else the publication in full (``delta`` absent, i.e. false); framed for the
    subscriber's delivery, and for ``channel_id`` (compaction) rather than the channel
    name when one is given."""
    codec = delivery.codec
    out = publication_dict(pub)
    out["data"] = delta_data(pub.data if patch is None else patch, codec.binary)
    if patch is not None:
        out["delta"] = True
    where: dict[str, Any] = {"id": channel_id} if channel_id else {"channel": channel}
    frame = codec.encode_reply({"push": {**where, "pub": out}})
    return frame, delivery.framing.one(frame)
