"""The receiving leg of the Redis engine: node subscriptions, dispatch, catch-up (the
position keeping and catch-up reads live in ``broker.engine.redis_positions``).

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
from typing import Any

from broker.engine.base import EngineError
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
from broker.engine.redis_positions import CatchUp, Handlers, Positions, UnrecoverableHandler
from broker.engine.redis_pubsub import Backoff, PubSubReader, ReaderHooks, Verdict
from broker.types import StreamPosition

__all__ = ["CatchUp", "Handlers", "Receiver", "UnrecoverableHandler"]

log = logging.getLogger(__name__)

_CONTROL = "\x00control"  # waiter key of the control subscription (not a channel name)
_NO_HISTORY = b"p0::"  # how a publication without history (offset 0, no epoch) begins


class Receiver(Positions):
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
        super().__init__(node_id, catch_up)
        self.topology, self.keys = topology, keys
        self.readers: dict[str, PubSubReader] = {}
        self._io_timeout, self._backoff = io_timeout, backoff
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
