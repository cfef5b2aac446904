"""CacheLayer: the shards' L1 over the engine (L2), as the node uses it.

One ``ChannelCache`` and one ``WriteBehindBuffer`` per shard index (the shard that owns
the channel owns its cache state: a shard restart drops both, see ``crash``). All of it
runs on the event loop thread; the only awaits are engine calls. See broker.cache.policy
for each policy's promise, and its durability window for write-behind.

Beyond the policies: last-value reads (``latest``, broker.cache.lastvalue), prewarm of a
(re)started shard's hottest channels (``prewarm``, hotness in broker.cache.heat, which
outlives the shard), refresh-ahead of hot channels under ``eviction: ttl``
(broker.cache.refresh: its tick starts with the first shard's ``prewarm`` and stops in
``flush_all``), and the adaptive policy (broker.cache.adaptive) when configured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.cache.adaptive import AdaptivePolicy, Change, limits_from
from broker.cache.heat import HeatMap
from broker.cache.policy import Pending, WriteBehindBuffer
from broker.cache.refresh import Refresher
from broker.cache.store import CacheStats, ChannelCache
from broker.cache.warm import Prewarmer
from broker.engine.base import EngineError
from broker.types import ClientInfo, Publication, StreamPosition

if TYPE_CHECKING:
    from broker.config import CacheConfig, ChannelOptions
    from broker.engine.base import Engine

__all__ = ["CacheLayer", "LayerStats"]

log = logging.getLogger("chorus.cache")


@dataclass(frozen=True, slots=True)
class LayerStats:
    """Totals over every shard (metrics, console)."""

    cache: CacheStats
    pending: int
    flushed: int
    lost: int
    max_flush_lag: float
    hit_ratio: float


class CacheLayer:
    """``resync(channel)`` is called when a channel's subscribers must re-sync (a
    write-behind offset the engine did not confirm)."""

    def __init__(self, engine: Engine, config: CacheConfig, shards: int,
                 shard_of: Callable[[str], int], resync: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic,
                 options: Callable[[str], ChannelOptions] | None = None) -> None:
        self.engine, self.config = engine, config
        self.enabled = config.memory_budget > 0
        self._shard_of, self._resync, self._clock = shard_of, resync, clock
        self.caches = [self._fresh_cache() for _ in range(shards)]
        self.buffers = [WriteBehindBuffer(config.max_pending) for _ in range(shards)]
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._flushing: dict[int, asyncio.Task[None]] = {}
        self.lost = 0
        self.heat = HeatMap()  # the node's, not a shard's: it survives shard restarts
        self.adaptive: AdaptivePolicy | None = None
        if config.adaptive:
            self.adaptive = AdaptivePolicy(limits_from(config, engine.name), start=clock())
        self.changes: deque[Change] = deque(maxlen=100)  # adaptive changes, newest last
        self.warm = Prewarmer(self, options)
        self.refresher = Refresher(self, options)

    def _fresh_cache(self) -> ChannelCache:
        c = self.config
        return ChannelCache(c.memory_budget, c.eviction, c.ttl)

    def policy(self, options: ChannelOptions, channel: str = "") -> str:
        """The policy in force for ``channel`` (the adaptive override, if any)."""
        if not self.enabled or not options.history_enabled:
            return "off"
        configured = options.cache_policy
        if self.adaptive is None or not channel:
            return configured
        chosen = self.adaptive.policy(channel, configured)
        if chosen != "write_behind" and configured != "write_behind":
            entry = self.caches[self._shard_of(channel)].entries.get(channel)
            if entry is not None and entry.pinned:
                # Back from write-behind: the engine must first get what L1 acked,
                # or an engine-first publish would reuse an acknowledged offset.
                return "write_behind"
        return chosen

    def l1_size(self, channel: str, options: ChannelOptions) -> int:
        if self.adaptive is None:
            return options.history_size
        return self.adaptive.l1_size(channel, options.history_size)

    def _record(self, channel: str, kind: str, options: ChannelOptions) -> None:
        """Count an access: hotness for prewarm, rates for the adaptive policy."""
        now = self._clock()
        self.heat.touch(channel, now)
        if self.adaptive is None:
            return
        for change in self.adaptive.record(channel, kind, now, options.cache_policy,
                                           options.history_size):
            self._apply(change)

    def _apply(self, change: Change) -> None:
        log.info("adaptive cache: %s %s %s -> %s (%s)", change.channel, change.kind,
                 change.old, change.new, change.reason)
        self.changes.append(change)
        if change.kind == "l1_size":
            assert isinstance(change.new, int)
            self.caches[self._shard_of(change.channel)].resize(change.channel, change.new)

    # -- writes -------------------------------------------------------------------------
    def published(self, channel: str, pub: Publication, position: StreamPosition,
                  options: ChannelOptions, *, remote: bool = False) -> None:
        """The engine accepted ``pub`` (write-through, read-through, or a remote node's:
        ``remote``, not counted as this node's publish rate)."""
        policy = self.policy(options, channel)
        if policy == "off" or not position.epoch:
            return
        if not remote:
            self._record(channel, "publish", options)
        self.caches[self._shard_of(channel)].append(
            channel, pub, position.epoch, now=self._clock(),
            create=policy == "write_through",
            size=self.l1_size(channel, options), ttl=options.history_ttl,
            full=options.history_size)

    async def publish_behind(self, channel: str, data: bytes, options: ChannelOptions, *,
                             info: ClientInfo | None, tags: dict[str, str] | None,
                             ) -> tuple[Publication, StreamPosition]:
        """Acknowledge from L1 and buffer for the engine (see the durability window).

        Error handling: EngineError if the channel is not cached and the engine cannot
        be read, or if the shard's buffer is full (nothing acknowledged).
        """
        index = self._shard_of(channel)
        await self.warm.ready(channel)
        self._record(channel, "publish", options)
        if self.caches[index].top(channel) is None:
            await self._load(channel, options)
        cache, buffer = self.caches[index], self.buffers[index]
        top = cache.top(channel)
        if top is None:  # evicted while loading: the budget is too small to hold it
            raise EngineError(f"channel {channel!r} does not fit in the cache budget")
        now = self._clock()
        pub = Publication(data, top.offset + 1, info, tags, int(time.time() * 1000))
        try:
            first = buffer.add(Pending(channel, pub, options.history_size,
                                       options.history_ttl, now))
        except OverflowError as error:
            raise EngineError(str(error)) from None
        cache.pin(channel, 1)  # first: the budget never sheds a pinned publication
        cache.append(channel, pub, top.epoch, now=now)
        if first:
            delay = options.cache_flush_delay
            loop = asyncio.get_running_loop()
            self._timers[index] = loop.call_later(delay, self._start_flush, index, delay)
        return pub, StreamPosition(pub.offset, top.epoch)

    def _start_flush(self, index: int, delay: float) -> None:
        self._timers.pop(index, None)
        if index not in self._flushing:
            task = asyncio.get_running_loop().create_task(self._flush(index, delay))
            self._flushing[index] = task

    async def _flush(self, index: int, delay: float) -> None:
        """Write one batch in order; on an engine failure keep the rest and retry later."""
        buffer = self.buffers[index]
        batch = buffer.take()
        try:
            for i, pending in enumerate(batch):
                try:
                    _, position = await self.engine.publish(
                        pending.channel, pending.pub.data, info=pending.pub.info,
                        tags=pending.pub.tags, history_size=pending.history_size,
                        history_ttl=pending.history_ttl)
                except EngineError as error:
                    log.warning("write-behind flush failed, retrying: %r", error)
                    buffer.put_back(batch[i:])
                    break
                self._confirmed(index, pending, position.offset)
        finally:
            self._flushing.pop(index, None)
        if len(buffer) and index not in self._timers and self.buffers[index] is buffer:
            loop = asyncio.get_running_loop()
            self._timers[index] = loop.call_later(delay, self._start_flush, index, delay)

    def _confirmed(self, index: int, pending: Pending, offset: int) -> None:
        self.buffers[index].written(pending, self._clock())
        cache = self.caches[index]
        cache.pin(pending.channel, -1)
        if offset != pending.pub.offset:  # another writer, or a lost window: resync
            log.warning("write-behind %s: engine offset %d, L1 offset %d; resyncing",
                        pending.channel, offset, pending.pub.offset)
            cache.invalidate(pending.channel)
            self._resync(pending.channel)

    async def flush_all(self) -> None:
        """Write every buffer now, and the hot-channel list for the next node
        (graceful shutdown); refresh-ahead stops (the engine is about to close)."""
        await self.refresher.stop()
        await self.warm.save_hot()
        for index in range(len(self.buffers)):
            timer = self._timers.pop(index, None)
            if timer is not None:
                timer.cancel()
            running = self._flushing.get(index)
            if running is not None:
                await running
            if len(self.buffers[index]):
                await self._flush(index, 0.05)

    def crash(self, index: int) -> int:
        """The cache holder of shard ``index`` died: its L1 and unflushed buffer are gone
        (a batch already being written still lands). Returns how many were lost."""
        timer = self._timers.pop(index, None)
        if timer is not None:
            timer.cancel()
        lost = len(self.buffers[index])
        for channel in self.buffers[index].channels():
            log.warning("shard %d crashed: unflushed write-behind publications of %s lost",
                        index, channel)
        self.lost += lost
        self.caches[index] = self._fresh_cache()
        self.buffers[index] = WriteBehindBuffer(self.config.max_pending)
        return lost

    # -- reads --------------------------------------------------------------------------
    async def _load(self, channel: str, options: ChannelOptions) -> None:
        pubs, top = await self.engine.history(channel, limit=-1,
                                              history_ttl=options.history_ttl)
        cache = self.caches[self._shard_of(channel)]
        if cache.top(channel) is None:  # nobody filled it while we awaited
            cache.load(channel, pubs, top, size=self.l1_size(channel, options),
                       ttl=options.history_ttl, now=self._clock(),
                       full=options.history_size)

    async def history(self, channel: str, options: ChannelOptions, *,
                      since: StreamPosition | None = None, limit: int = 0,
                      reverse: bool = False) -> tuple[list[Publication], StreamPosition]:
        """Broker.history through L1 (same results and errors as the engine's).

        A channel being prewarmed is served once its warm-up is done."""
        if self.policy(options, channel) == "off":
            return await self.engine.history(channel, since=since, limit=limit,
                                             reverse=reverse, history_ttl=options.history_ttl)
        await self.warm.ready(channel)
        self._record(channel, "read", options)
        cache = self.caches[self._shard_of(channel)]
        found = cache.read(channel, since, limit, reverse, self._clock())
        if found is not None:
            return found
        if cache.top(channel) is None:
            await self._load(channel, options)
            found = self.caches[self._shard_of(channel)].read(
                channel, since, limit, reverse, self._clock())
            if found is not None:
                return found
        return await self.engine.history(channel, since=since, limit=limit,
                                          reverse=reverse, history_ttl=options.history_ttl)

    async def latest(self, channel: str, options: ChannelOptions,
                     ) -> tuple[Publication | None, StreamPosition]:
        """The channel's latest publication (None if none is held) and its top: from L1
        when it holds the channel, else the engine (history limit 1, reverse), which
        then fills L1 when that is the whole window (``history_size`` 1).

        Error handling: engine errors propagate."""
        policy = self.policy(options, channel)
        if policy != "off":
            await self.warm.ready(channel)
            self._record(channel, "read", options)
            found = self.caches[self._shard_of(channel)].read(
                channel, None, 1, True, self._clock())
            if found is not None:
                return (found[0][0] if found[0] else None), found[1]
        pubs, top = await self.engine.history(channel, limit=1, reverse=True,
                                              history_ttl=options.history_ttl)
        cache = self.caches[self._shard_of(channel)]
        if policy != "off" and options.history_size == 1 and cache.top(channel) is None:
            cache.load(channel, pubs, top, size=1, ttl=options.history_ttl,
                       now=self._clock())
        return (pubs[0] if pubs else None), top

    def prewarm(self, index: int) -> None:
        """Shard ``index`` (re)started: reload its hottest channels (see Prewarmer),
        and keep hot channels fresh from now on (refresh-ahead, if configured)."""
        if self.enabled:
            self.warm.start(index)
            self.refresher.start()

    def invalidate(self, channel: str) -> None:
        if self.enabled:
            self.caches[self._shard_of(channel)].invalidate(channel)

    def statistics(self) -> LayerStats:
        total = CacheStats()
        for cache in self.caches:
            s = cache.statistics()
            total.hits += s.hits
            total.misses += s.misses
            total.evictions += s.evictions
            total.bytes += s.bytes
            total.entries += s.entries
        reads = total.hits + total.misses
        return LayerStats(total, sum(len(b) for b in self.buffers),
                          sum(b.flushed for b in self.buffers), self.lost,
                          max((b.max_lag for b in self.buffers), default=0.0),
                          total.hits / reads if reads else 0.0)

    def as_dict(self) -> dict[str, Any]:
        s = self.statistics()
        c = s.cache
        return {"hits": c.hits, "misses": c.misses, "evictions": c.evictions,
                "bytes": c.bytes, "entries": c.entries, "pending": s.pending,
                "flushed": s.flushed, "lost": s.lost, "max_flush_lag": s.max_flush_lag,
                "hit_ratio": s.hit_ratio, "refreshes": self.refresher.refreshes,
                "refresh": self.refresher.as_dict(), "prewarm": self.warm.as_dict(),
                "adaptive": self._adaptive_dict()}

    def _adaptive_dict(self) -> dict[str, Any]:
        adaptive = self.adaptive
        if adaptive is None:
            return {"enabled": False}
        return {"enabled": True, "policies": dict(adaptive.policies),
                "l1_sizes": dict(adaptive.l1_sizes),
                "changes": [c.as_dict() for c in self.changes]}
