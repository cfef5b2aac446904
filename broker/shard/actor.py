"""Channel shard actor: owns the subscribers of the channels that hash to it, and fans out.

A publication reaches the shard as one ``Deliver`` message. The shard encodes it once per
wire format in use (JSON, protobuf), wraps each in a WebSocket frame once, and pushes the
same bytes into every subscriber's outbox: per subscriber that is one method call and a
list append.

Failure policy: a shard is a permanent child of the shard supervisor. A restarted shard
starts empty and asks the node to have every connection re-register its subscriptions
to channels of this shard (``Node.shard_restarted``).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors import Actor
from broker.connection.outbox import Outbox, ws_frame
from broker.protocol import JSON_CODEC, PROTOBUF_CODEC, encode_publication_push
from broker.shard.state import ShardState, Subscriber
from broker.types import ClientInfo, Publication
from broker.wire import client_info_dict

if TYPE_CHECKING:
    from broker.node import Node

CONNECTIONS_ID = "chorus/connections"  # the connection supervisor (see broker.tree)

log = logging.getLogger("chorus.shard")


def shard_index(channel: str, count: int) -> int:
    """Which shard owns ``channel`` (stable across processes and restarts)."""
    return zlib.crc32(channel.encode()) % count


@dataclass(slots=True)
class Subscribe:
    channel: str
    conn_id: str
    outbox: Outbox
    binary: bool
    join_leave: bool


@dataclass(slots=True)
class Activate:
    channel: str
    conn_id: str
    after_offset: int


@dataclass(slots=True)
class Unsubscribe:
    channel: str
    conn_id: str


@dataclass(slots=True)
class Deliver:
    channel: str
    pub: Publication


@dataclass(slots=True)
class DeliverJoinLeave:
    channel: str
    info: ClientInfo
    join: bool


@dataclass(slots=True)
class Resync:
    """The channel's stream lost publications: every subscriber must resubscribe."""

    channel: str


@dataclass(slots=True)
class ChannelSummary:
    """Ask a shard for ``{channel: subscriber count}``."""


class ShardActor(Actor):
    kind = "shard"

    def __init__(self, index: int, node: Node) -> None:
        self.index = index
        self.node = node
        self.state = ShardState()

    def on_start(self) -> None:
        self.node.shard_started(self.index)

    def receive(self, message: Any) -> Any:
        if type(message) is Deliver:
            self._deliver(message.channel, message.pub)
        elif isinstance(message, Subscribe):
            sub = Subscriber(message.conn_id, message.outbox, message.binary, message.join_leave)
            if self.state.add(message.channel, sub):
                self.run_effect(self.node.engine.subscribe(message.channel),
                                on_error=self._engine_error)
        elif isinstance(message, Activate):
            for pub in self.state.activate(message.channel, message.conn_id,
                                           message.after_offset):
                self._deliver_one(message.channel, pub, message.conn_id)
        elif isinstance(message, Unsubscribe):
            if self.state.remove(message.channel, message.conn_id):
                self.run_effect(self.node.engine.unsubscribe(message.channel),
                                on_error=self._engine_error)
        elif isinstance(message, DeliverJoinLeave):
            self._deliver_join_leave(message)
        elif isinstance(message, Resync):
            chan = self.state.channels.get(message.channel)
            for conn_id in list(chan.subscribers) if chan is not None else []:
                self.tell(f"{CONNECTIONS_ID}/{conn_id}", message)
        elif isinstance(message, ChannelSummary):
            return {name: len(chan) for name, chan in self.state.channels.items()}
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
        if chan.json:
            frame = encode_publication_push(JSON_CODEC, channel, pub)
            wire = ws_frame(frame, False)
            push = Outbox.push
            for outbox in chan.json.values():
                push(outbox, frame, wire)
        if chan.binary:
            frame = encode_publication_push(PROTOBUF_CODEC, channel, pub)
            wire = ws_frame(frame, True)
            push = Outbox.push
            for outbox in chan.binary.values():
                push(outbox, frame, wire)
        self.node.metrics_delivered(len(chan.json) + len(chan.binary), channel)

    def _deliver_one(self, channel: str, pub: Publication, conn_id: str) -> None:
        chan = self.state.channels.get(channel)
        sub = None if chan is None else chan.subscribers.get(conn_id)
        if sub is not None:
            codec = PROTOBUF_CODEC if sub.binary else JSON_CODEC
            sub.outbox.push(encode_publication_push(codec, channel, pub))

    def _deliver_join_leave(self, message: DeliverJoinLeave) -> None:
        targets = self.state.join_leave_targets(message.channel)
        if not targets:
            return
        key = "join" if message.join else "leave"
        push = {"push": {"channel": message.channel, key: {"info": client_info_dict(message.info)}}}
        frames: dict[bool, bytes] = {}
        for sub in targets:
            frame = frames.get(sub.binary)
            if frame is None:
                codec = PROTOBUF_CODEC if sub.binary else JSON_CODEC
                frame = frames[sub.binary] = codec.encode_reply(push)
            sub.outbox.push(frame)

    def _engine_error(self, error: BaseException) -> None:
        log.warning("shard %d: engine subscription failed: %r", self.index, error)
