"""The receiving leg of the Redis engine: node subscriptions, dispatch, catch-up.

``Receiver`` holds the pub/sub readers (one per route), the set of channels this node is
subscribed to and, per channel, the last stream position the node has seen
(``PositionTracker``). The readers' tasks run while the engine link actor runs
``RedisEngine.run_link`` (``resume``/``suspend``). Guarantees:

- A message sent by this node is never handed to its handlers (dropped by node id), but
  it still advances the channel's position.
- After ``subscribe(channel)`` returns, every publication with an offset above the
  baseline read right after Redis confirmed the subscription reaches the handler once,
  in offset order — across reconnects too: when a connection comes back the channel is
  re-subscribed and the stream is read from the last seen offset. When that is
  impossible (the epoch changed, or the publications fell out of the stream) the
  ``on_unrecoverable(channel)`` hook is called instead of delivering a partial gap.
- An epoch change announced on the channel (``b"e"``, broker.engine.redis_doubt: the
  stream diverged on a new primary) calls ``on_unrecoverable(channel)`` too, and the
  channel's position moves into the new epoch. A catch-up that finds the stream's top
  below the last seen position in the same epoch (the stream went back, so its offsets
  will be handed out again) hands the channel to ``went_back`` (the engine moves its
  epoch: broker.engine.redis_doubt).
- Channels without history (offset 0) are at most once: a cut loses them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from broker.engine.base import (
    ControlHandler,
    EngineError,
    JoinLeaveHandler,
    PublicationHandler,
)
from broker.engine.redis_codec import (
    KIND_EPOCH,
    KIND_JOIN,
    KIND_LEAVE,
    KIND_PUBLICATION,
    DecodeError,
    KeyScheme,
    decode_body,
    decode_control,
    decode_epoch,
    decode_published,
    node_marker,
    publication_of,
    sent_by,
)
from broker.engine.redis_link import Topology
from broker.engine.redis_pubsub import Backoff, PositionTracker, PubSubReader, ReaderHooks, Verdict
from broker.types import Publication, StreamPosition

__all__ = ["CatchUp", "Handlers", "Receiver", "UnrecoverableHandler"]

log = logging.getLogger(__name__)

UnrecoverableHandler = Callable[[str], None]
# (channel, since or None for "from the start") -> (pubs with sender node, top, status)
# where top.epoch == "" means the stream does not exist; status 0 = readable.
CatchUp = Callable[
    [str, StreamPosition | None],
    Awaitable[tuple[list[tuple[Publication, str]], StreamPosition, int]],
]
_CONTROL = "\x00control"  # waiter key of the control subscription (not a channel name)
_NO_HISTORY = b"p0::"  # how a publication without history (offset 0, no epoch) begins


def _ignore(*args: object) -> None:
    pass


@dataclass
class Handlers:
    publication: PublicationHandler = _ignore
    control: ControlHandler = _ignore
    join: JoinLeaveHandler = _ignore
    leave: JoinLeaveHandler = _ignore
    unrecoverable: UnrecoverableHandler = _ignore


@dataclass
class ReceiveStats:
    delivered: int = 0
    caught_up: int = 0
    unrecoverable: int = 0
    undecodable: int = 0
    handler_errors: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Receiver:
    """See the module docstring. ``node_id`` marks this node's own messages."""

    def __init__(
        self,
        topology: Topology,
        keys: KeyScheme,
        node_id: str,
        catch_up: CatchUp,
        *,
        io_timeout: float,
        backoff: Callable[[], Backoff],
    ) -> None:
        self.topology, self.keys, self.node_id = topology, keys, node_id
        self.handlers = Handlers()
        # (channel, last seen position): the stream went back below it (see catch_up).
        self.went_back: Callable[[str, StreamPosition], None] = _ignore
        self.stats = ReceiveStats()
        self.tracker = PositionTracker()
        self.readers: dict[str, PubSubReader] = {}
        self.channels: set[str] = set()
        self._read_stream, self._io_timeout, self._backoff = catch_up, io_timeout, backoff
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._hooks = ReaderHooks(self._subscribed, self._message, self._reconnecting)
        # Per message, these are compared with what arrives: made once.
        self._own = node_marker(node_id)
        self._control_name, self._head = keys.control, keys.pubsub_head
        self._suspended = False
        self._failed: asyncio.Future[None] | None = None
        self._suspension: asyncio.Future[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the control channel and wait until Redis confirmed it.

        Error handling: raises TimeoutError if that takes longer than the I/O timeout.
        """
        name = self.keys.control
        await self._subscribe_name(_CONTROL, name, self.topology.route(name))

    async def close(self) -> None:
        self._suspended = True
        for reader in self.readers.values():
            await reader.close()
        for waiter in self._waiters.values():
            waiter.cancel()

    async def suspend(self) -> None:
        """Stop every reader (their owner ended); names and positions are kept."""
        self._suspended = True
        done = self._suspension = asyncio.get_running_loop().create_future()
        try:
            for reader in list(self.readers.values()):
                await reader.close()
        finally:
            done.set_result(None)

    async def resume(self) -> None:
        """Start every stopped reader again, once a suspension under way has finished:
        each re-subscribes its names and, once confirmed, catches their channels up
        from the streams (counted as a reconnect)."""
        if self._suspension is not None:
            await asyncio.shield(self._suspension)
        self._suspended = False
        for reader in self.readers.values():
            if not reader.running:
                reader.reconnects += 1
                self._start(reader)

    async def wait_failed(self) -> None:
        """Wait until a reader ends by itself (it never should: its loop reconnects);
        raises EngineError then."""
        self._failed = asyncio.get_running_loop().create_future()
        await self._failed

    def _start(self, reader: PubSubReader) -> None:
        reader.start()
        if reader.task is not None:
            reader.task.add_done_callback(self._reader_ended)

    def _reader_ended(self, task: asyncio.Task[None]) -> None:
        failed = self._failed
        if task.cancelled() or failed is None or failed.done():
            return
        error = task.exception()
        failed.set_exception(EngineError(f"redis pub/sub reader ended: {error!r}"))

    def _reader(self, route: str) -> PubSubReader:
        reader = self.readers.get(route)
        if reader is None:
            reader = self.readers[route] = PubSubReader(
                route, self.topology.open_pubsub, self._hooks,
                sharded=self.topology.sharded_pubsub, backoff=self._backoff(),
            )
            if not self._suspended:  # else the link's owner starts it when it resumes
                self._start(reader)
        return reader

    # -- node subscriptions ----------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Subscribe and read the baseline; see the module docstring.

        Error handling: raises TimeoutError (nothing kept) when Redis does not confirm
        within the I/O timeout, e.g. while the link is down.
        """
        waiter = self._waiters.get(channel)
        if waiter is not None:
            await asyncio.wait_for(asyncio.shield(waiter), self._io_timeout)
            return
        if channel in self.channels:
            return
        self.channels.add(channel)
        try:
            await self._subscribe_name(channel, self.keys.pubsub(channel),
                                       self.topology.route(channel))
        except BaseException:
            await self.unsubscribe(channel)
            raise

    async def _subscribe_name(self, key: str, name: str, route: str) -> None:
        waiter = self._waiters[key] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self._io_timeout):
                reader = self._reader(route)
                while True:
                    await reader.connected.wait()
                    if await reader.subscribe(name):
                        break
                await asyncio.shield(waiter)
        finally:
            self._waiters.pop(key, None)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        self.tracker.forget(channel)
        name = self.keys.pubsub(channel)
        for reader in self.readers.values():
            if name in reader.names:
                await reader.unsubscribe(name)

    # -- reader hooks --------------------------------------------------------------------

    async def _subscribed(self, names: list[str], route: str) -> None:
        """Baselines for new subscriptions, catch-up for re-subscribed ones."""
        fresh: list[str] = []
        known: list[str] = []
        for name in names:
            channel = self.keys.channel_of(name)
            if name == self.keys.control:
                self._resolve(_CONTROL)
            elif channel is None or channel not in self.channels:
                continue
            elif channel in self.tracker:
                known.append(channel)
            else:
                fresh.append(channel)
        if fresh:
            await self._baselines(fresh)
        if known:
            await asyncio.gather(*(self.catch_up(channel) for channel in known))

    async def _baselines(self, channels: list[str]) -> None:
        by_client: dict[int, tuple[Any, list[str]]] = {}
        for channel in channels:
            client = self.topology.client(channel)
            by_client.setdefault(id(client), (client, []))[1].append(channel)
        for client, group in by_client.values():
            async with client.pipeline(transaction=False) as pipe:
                for channel in group:
                    pipe.hmget(self.keys.meta(channel), "e", "t")
                metas = await pipe.execute()
            for channel, (epoch, top) in zip(group, metas, strict=True):
                position = StreamPosition(int(top or 0), epoch.decode() if epoch else "")
                self.tracker.set(channel, position)
                self._resolve(channel)

    def _resolve(self, key: str) -> None:
        waiter = self._waiters.get(key)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _reconnecting(self, route: str) -> None:
        """Re-learn the topology; move names whose route changed to their new reader."""
        await self.topology.refresh()
        reader = self.readers.get(route)
        if reader is None:
            return
        for name in list(reader.names):
            channel = self.keys.channel_of(name)
            target = self.topology.route(name if channel is None else channel)
            if target != route:
                reader.names.discard(name)
                await self._reader(target).subscribe(name)

    def _message(self, name: str, data: bytes) -> Awaitable[None] | None:
        try:
            if name == self._control_name:
                node, payload = decode_control(data)
                if node != self.node_id:
                    self._call(self.handlers.control, payload)
                return None
            head = self._head
            if not name.startswith(head) or not name.endswith("}"):
                return None  # not a channel of this engine (see KeyScheme.channel_of)
            channel = name[len(head) : -1]
            if channel not in self.channels or not data:
                return None
            if data[0] == KIND_PUBLICATION:
                return self._publication(channel, data)
            if data[0] == KIND_EPOCH:
                self._epoch_moved(channel, decode_epoch(data))
                return None
            if data[0] in (KIND_JOIN, KIND_LEAVE):
                body = decode_body(data, 1)
                if body.node != self.node_id and body.info is not None:
                    handler = self.handlers.join if data[0] == KIND_JOIN else self.handlers.leave
                    self._call(handler, channel, body.info)
        except DecodeError as exc:
            self.stats.undecodable += 1
            log.warning("undecodable redis message on %s: %s", name, exc)
        return None

    def _publication(self, channel: str, data: bytes) -> Awaitable[None] | None:
        if data.startswith(_NO_HISTORY):  # offset 0: no position to track
            if not sent_by(data, len(_NO_HISTORY), self._own):
                pub, position, _ = publication_of(data)
                self._deliver(channel, pub, position)
            return None
        offset, epoch, start = decode_published(data)
        verdict = self.tracker.judge(channel, offset, epoch)
        if verdict is Verdict.DUPLICATE:
            return None
        if verdict is Verdict.GAP:
            return self.catch_up(channel)  # reads this publication from the stream too
        if verdict is Verdict.NEW_EPOCH:
            self._unrecoverable(channel)
        if offset:
            self.tracker.set(channel, StreamPosition(offset, epoch))
        if not sent_by(data, start, self._own):
            pub, position, _ = publication_of(data)
            self._deliver(channel, pub, position)
        return None

    def _epoch_moved(self, channel: str, moved: StreamPosition) -> None:
        """The channel's stream diverged and was given a new epoch (VERIFY): positions
        of the old one are unrecoverable, so its subscribers resync now rather than
        at the next publication (which may never come)."""
        last = self.tracker.get(channel)
        if last is None or last.epoch == moved.epoch:
            return
        if last.epoch:
            self._unrecoverable(channel)
        self.tracker.set(channel, moved)

    async def own_publication(self, channel: str, position: StreamPosition) -> None:
        """This node stored a publication at ``position`` and fans it out locally next:
        bring everything before it to the handlers first, so local subscribers get
        offsets in order.

        - ``position`` opens an epoch this node has not seen (the stream was lost, e.g.
          Redis restarted empty, and the reader has not noticed: it may still be
          reconnecting): the channel's subscribers are told first. Otherwise the local
          fan-out would hand them the new epoch's offsets as if they continued the old
          stream — a silent gap. Found by tests/cluster/test_faults.py.
        - Lower offsets of other nodes have not come through pub/sub yet (the link lags
          or is reconnecting): they are read from the stream and delivered now. Otherwise
          the local fan-out would overtake them. Found by tests/cluster/test_faults.py
          (a failover's reconnect).

        Afterwards the channel's position is at least ``position``: its echo over pub/sub
        is a duplicate. Not covered: with several publishers, a later offset of another
        node that arrives while this publish is between Redis and its fan-out.
        """
        if not position.offset or channel not in self.channels:
            return
        verdict = self.tracker.judge(channel, position.offset, position.epoch)
        if verdict is Verdict.NEW_EPOCH:
            self._unrecoverable(channel)
        elif verdict is Verdict.GAP:
            await self.catch_up(channel, until=position.offset)
        seen = self.tracker.get(channel)
        if seen is None or seen.epoch != position.epoch or seen.offset < position.offset:
            self.tracker.set(channel, position)

    async def reach(self, channel: str, position: StreamPosition) -> None:
        """A history read is about to answer ``position`` as the channel's top (a
        subscribe reply takes it as the subscriber's position): bring the handlers up
        to it first. Otherwise publications of other nodes up to ``position`` that the
        live path has not delivered yet (the link lags or is reconnecting) would reach
        the subscriber after its reply — a repeat. Found by tests/cluster/test_faults.py
        (Redis restarted empty: a reply at the new epoch's offset 2, then offset 2 again
        from the catch-up after the reconnect).

        Only within the epoch the node knows (or from an empty baseline): an epoch it has
        not seen is left to the reader's catch-up and the live path, which report it
        (a report now would resync the very subscription being answered, and a pending
        one is dropped without its reply). Not covered, as in ``own_publication``: this
        node's own publications still between Redis and their fan-out.
        """
        if not position.epoch or channel not in self.channels:
            return
        seen = self.tracker.get(channel)
        if seen is None or (seen.epoch and seen.epoch != position.epoch):
            return  # no baseline yet (the subscribe reads it), or an unseen epoch
        if seen.epoch == position.epoch and seen.offset >= position.offset:
            return  # nothing to bring
        await self.catch_up(channel)

    # -- catch-up ------------------------------------------------------------------------

    async def catch_up(self, channel: str, until: int | None = None) -> None:
        """Deliver what the stream holds after the channel's last seen position (only
        offsets below ``until``, if given: the caller delivers ``until`` itself)."""
        last = self.tracker.get(channel)
        if last is None:
            return
        pubs, top, status = await self._read_stream(channel, last if last.epoch else None)
        if channel not in self.channels:
            return  # unsubscribed while reading
        if top.epoch == "":
            if last.epoch:
                self._unrecoverable(channel)  # the stream is gone with its epoch
            self.tracker.set(channel, StreamPosition(0, ""))
            return
        # A restored channel (broker.backup) answers a position in its prior epoch under
        # its new one: nothing is lost, but subscribers hold the old epoch, so they
        # resubscribe (and recover, with recovered: true) rather than take publications
        # numbered in an epoch they were never told.
        renamed = status == 0 and bool(last.epoch) and top.epoch != last.epoch
        complete = status == 0 and not renamed and (
            bool(last.epoch) or (pubs[0][0].offset == 1 if pubs else top.offset == 0)
        )
        # The live path may have delivered some of these while the stream was read:
        # deliver only what lies past the tracker *now*, and never move it backwards.
        seen = self.tracker.get(channel)
        floor = last.offset
        if seen is not None and seen.epoch == top.epoch:
            floor = max(floor, seen.offset)
        if renamed:
            log.info("redis engine: %s was restored under a new epoch; subscribers resync",
                     channel)
            self._unrecoverable(channel)
        elif not complete:
            if status == 2 and last.epoch and top.epoch == last.epoch:
                # Below what this node saw, same epoch: the next publications would
                # reuse offsets it already holds and be dropped as duplicates.
                self._call(self.went_back, channel, last)
            self._unrecoverable(channel)
        else:
            for pub, node in pubs:
                if until is not None and pub.offset >= until:
                    break
                if node != self.node_id and pub.offset > floor:
                    self.stats.caught_up += 1
                    self._deliver(channel, pub, StreamPosition(pub.offset, top.epoch))
        if until is not None and top.offset >= until:
            top = StreamPosition(until - 1, top.epoch)  # what lies past is not delivered
        if seen is None or seen.epoch != top.epoch or seen.offset < top.offset:
            self.tracker.set(channel, top)

    # -- handlers --------------------------------------------------------------------------

    def _deliver(self, channel: str, pub: Publication, position: StreamPosition | None) -> None:
        self.stats.delivered += 1
        self._call(self.handlers.publication, channel, pub, position)

    def _unrecoverable(self, channel: str) -> None:
        self.stats.unrecoverable += 1
        log.info("redis engine: publications of %s since the last position are lost", channel)
        self._call(self.handlers.unrecoverable, channel)

    def _call(self, handler: Callable[..., None], *args: Any) -> None:
        """Run a node handler; its failure is logged, never breaks the reader."""
        try:
            handler(*args)
        except Exception:
            self.stats.handler_errors += 1
            log.exception("redis engine: handler %r failed", handler)
