"""CacheLayer: the shards' L1 over the engine (L2), as the node uses it.

The state is the shards': each shard incarnation owns a ``ShardL1`` (its ChannelCache,
its WriteBehindBuffer, the channels it follows on the engine) and attaches it here when
it starts and detaches it when it ends, so a restart drops that state by construction
(broker.cache.shard_l1). This layer holds the rules that read and write it; it runs on
the event loop thread and its only awaits are engine calls. See broker.cache.policy for
each policy's promise, and its durability window for write-behind.

Authority: with an engine shared by several nodes (``shared``), L1 knows what this
node delivered, not what other nodes published. A channel's L1 answers only while its
shard follows the channel on the engine (a confirmed subscription, because it has local
subscribers) and the engine link is up; otherwise reads go to the engine. With the
memory engine this node is the only writer and L1 always answers. Write-behind channels
are always answered from L1 (their newest publications exist only there until flushed;
write-behind needs a single writer).

Beyond the policies: last-value reads (``latest``, broker.cache.lastvalue), prewarm of a
(re)started shard's hottest channels (broker.cache.warm, run as the shard's effect;
hotness in broker.cache.heat outlives the shard), refresh-ahead of hot channels under
``eviction: ttl`` (broker.cache.refresh, ticked by each shard's timer), and the adaptive
policy (broker.cache.adaptive) when configured.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.cache.heat import HeatMap
from broker.cache.policy import Pending, WriteBehindBuffer
from broker.cache.refresh import Refresher
from broker.cache.shard_l1 import ShardL1
from broker.cache.store import CacheStats, ChannelCache
from broker.cache.warm import Prewarmer
from broker.engine.base import EngineError
from broker.types import ClientInfo, Publication, StreamPosition

if TYPE_CHECKING:
    from broker.cache.adaptive import AdaptivePolicy, Change
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
    write-behind offset the engine did not confirm). ``shared``: other nodes or workers
    write through the same engine. ``link()`` answers (link up, link generation): the
    generation changes whenever the engine's link to the other nodes was re-made."""

    def __init__(self, engine: Engine, config: CacheConfig, shards: int,
                 shard_of: Callable[[str], int], resync: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic,
                 options: Callable[[str], ChannelOptions] | None = None, *,
                 shared: bool = False,
                 link: Callable[[], tuple[bool, int]] | None = None) -> None:
        self.engine, self.config = engine, config
        self.enabled = config.memory_budget > 0
        self.shared = shared
        self._shard_of, self._resync, self._clock = shard_of, resync, clock
        self._link = link or (lambda: (True, 0))
        self._l1: list[ShardL1 | None] = [None] * shards
        self._retired = CacheStats()  # counters of detached incarnations (monotonic metrics)
        self._retired_flushed = 0
        self.lost = 0
        self.heat = HeatMap()  # the node's, not a shard's: it survives shard restarts
        self.adaptive: AdaptivePolicy | None = None
        if config.adaptive:  # its module loads only when configured
            from broker.cache.adaptive import AdaptivePolicy, limits_from

            self.adaptive = AdaptivePolicy(limits_from(config, engine.name), start=clock())
        self.changes: deque[Change] = deque(maxlen=100)  # adaptive changes, newest last
        self.warm = Prewarmer(self, options)
        self.refresher = Refresher(self, options)

    # -- the shards' state --------------------------------------------------------------
    def new_l1(self, index: int,
               arm_flush: Callable[[float], None] | None = None) -> ShardL1:
        """Fresh state for a starting incarnation of shard ``index``."""
        c = self.config
        l1 = ShardL1(index, ChannelCache(c.memory_budget, c.eviction, c.ttl),
                     WriteBehindBuffer(c.max_pending))
        if arm_flush is not None:
            l1.arm_flush = arm_flush
        return l1

    def attach(self, l1: ShardL1) -> None:
        """Shard ``l1.index`` started: its state is the one reads and writes use."""
        self._l1[l1.index] = l1

    def detach(self, l1: ShardL1) -> int:
        """Shard ``l1.index`` ended: its L1 and its unflushed write-behind publications
        go with it (nothing writes to them any more). Returns how many were lost."""
        if self._l1[l1.index] is l1:
            self._l1[l1.index] = None
        lost = len(l1.buffer) + len(l1.inflight)
        for channel in l1.buffer.channels() | {p.channel for p in l1.inflight}:
            log.warning("shard %d ended: unflushed write-behind publications of %s lost",
                        l1.index, channel)
        self.lost += lost
        s, r = l1.cache.statistics(), self._retired
        r.hits, r.misses, r.evictions = r.hits + s.hits, r.misses + s.misses, \
            r.evictions + s.evictions
        self._retired_flushed += l1.buffer.flushed
        return lost

    def l1_of(self, channel: str) -> ShardL1 | None:
        """The live state of the shard owning ``channel`` (None while it restarts)."""
        return self._l1[self._shard_of(channel)]

    @property
    def caches(self) -> list[ChannelCache]:
        """Each shard's L1 by index (an empty one for a shard that is restarting)."""
        c = self.config
        return [l1.cache if l1 is not None else ChannelCache(c.memory_budget, c.eviction, c.ttl)
                for l1 in self._l1]

    @property
    def attached(self) -> list[ShardL1]:
        return [l1 for l1 in self._l1 if l1 is not None]

    def authoritative(self, channel: str) -> bool:
        """Whether L1 may answer for ``channel`` (see the module docstring)."""
        if not self.shared:
            return True
        l1 = self.l1_of(channel)
        if l1 is None:
            return False
        up, generation = self._link()
        return up and l1.current(channel, generation)

    def link_generation(self) -> int:
        return self._link()[1]

    # -- policies -------------------------------------------------------------------------
    def policy(self, options: ChannelOptions, channel: str = "") -> str:
        """The policy in force for ``channel`` (the adaptive override, if any)."""
        if not self.enabled or not options.history_enabled:
            return "off"
        configured = options.cache_policy
        if self.adaptive is None or not channel:
            return configured
        chosen = self.adaptive.policy(channel, configured)
        if chosen != "write_behind" and configured != "write_behind":
            l1 = self.l1_of(channel)
            entry = None if l1 is None else l1.cache.entries.get(channel)
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
        l1 = self.l1_of(change.channel)
        if change.kind == "l1_size" and l1 is not None:
            assert isinstance(change.new, int)
            l1.cache.resize(change.channel, change.new)

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
        l1 = self.l1_of(channel)
        if l1 is None or not self.authoritative(channel):
            return  # L1 does not mirror this channel: nothing to keep current
        l1.cache.append(
            channel, pub, position.epoch, now=self._clock(),
            create=policy == "write_through",
            size=self.l1_size(channel, options), ttl=options.history_ttl,
            full=options.history_size)

    async def publish_behind(self, channel: str, data: bytes, options: ChannelOptions, *,
                             info: ClientInfo | None, tags: dict[str, str] | None,
                             delta: bool = False) -> tuple[Publication, StreamPosition]:
        """Acknowledge from L1 and buffer for the engine (see the durability window).

        Error handling: EngineError if the channel is not cached and the engine cannot
        be read, if the shard is restarting, or if the shard's buffer is full (nothing
        acknowledged).
        """
        await self.warm.ready(channel)
        self._record(channel, "publish", options)
        l1 = self.l1_of(channel)
        if l1 is not None and l1.cache.top(channel) is None:
            await self._load(channel, options)
            l1 = self.l1_of(channel)  # after the await: the shard may have restarted
        if l1 is None:
            raise EngineError(f"the shard of {channel!r} is restarting; publish again")
        top = l1.cache.top(channel)
        if top is None:  # evicted while loading: the budget is too small to hold it
            raise EngineError(f"channel {channel!r} does not fit in the cache budget")
        now = self._clock()
        pub = Publication(data, top.offset + 1, info, tags, int(time.time() * 1000), delta)
        try:
            l1.buffer.add(Pending(channel, pub, options.history_size,
                                  options.history_ttl, now))
        except OverflowError as error:
            raise EngineError(str(error)) from None
        l1.cache.pin(channel, 1)  # first: the budget never sheds a pinned publication
        l1.cache.append(channel, pub, top.epoch, now=now)
        if not l1.flush_armed:
            l1.flush_armed = True
            l1.arm_flush(options.cache_flush_delay)
        return pub, StreamPosition(pub.offset, top.epoch)

    async def flush(self, l1: ShardL1, delay: float) -> None:
        """Write ``l1``'s buffer as one batch, in order (the shard runs this as its
        effect when its flush timer fires). On an engine failure the rest is kept and
        retried ``delay`` later."""
        batch = l1.buffer.take()
        l1.inflight = batch
        try:
            while l1.inflight:
                pending = l1.inflight[0]
                try:
                    _, position = await self.engine.publish(
                        pending.channel, pending.pub.data, info=pending.pub.info,
                        tags=pending.pub.tags, history_size=pending.history_size,
                        history_ttl=pending.history_ttl, delta=pending.pub.delta)
                except EngineError as error:
                    log.warning("write-behind flush failed, retrying: %r", error)
                    l1.buffer.put_back(l1.inflight)
                    l1.inflight = []
                    break
                l1.inflight.pop(0)
                self._confirmed(l1, pending, position.offset)
        finally:
            l1.flush_armed = False
        if len(l1.buffer) and self._l1[l1.index] is l1:
            l1.flush_armed = True
            l1.arm_flush(delay)

    def _confirmed(self, l1: ShardL1, pending: Pending, offset: int) -> None:
        l1.buffer.written(pending, self._clock())
        l1.cache.pin(pending.channel, -1)
        if offset != pending.pub.offset:  # another writer, or a lost window: resync
            log.warning("write-behind %s: engine offset %d, L1 offset %d; resyncing",
                        pending.channel, offset, pending.pub.offset)
            l1.cache.invalidate(pending.channel)
            self._resync(pending.channel)

    async def flush_all(self) -> None:
        """Write every attached shard's buffer now, and save the hot-channel list for
        the next node (graceful shutdown; shards that stopped flushed their own)."""
        for l1 in self.attached:
            if len(l1.buffer):
                await self.flush(l1, 0.05)
        await self.warm.save_hot()

    # -- reads --------------------------------------------------------------------------
    async def _load(self, channel: str, options: ChannelOptions) -> None:
        pubs, top = await self.engine.history(channel, limit=-1,
                                              history_ttl=options.history_ttl)
        l1 = self.l1_of(channel)
        if l1 is not None and l1.cache.top(channel) is None:  # nobody filled it meanwhile
            l1.cache.load(channel, pubs, top, size=self.l1_size(channel, options),
                          ttl=options.history_ttl, now=self._clock(),
                          full=options.history_size)

    def _from_l1(self, policy: str, channel: str) -> bool:
        return policy == "write_behind" or (policy != "off" and self.authoritative(channel))

    async def history(self, channel: str, options: ChannelOptions, *,
                      since: StreamPosition | None = None, limit: int = 0,
                      reverse: bool = False) -> tuple[list[Publication], StreamPosition]:
        """Broker.history through L1 where L1 is authoritative (same results and errors
        as the engine's), else from the engine.

        A channel being prewarmed is served once its warm-up is done."""
        if not self._from_l1(self.policy(options, channel), channel):
            return await self.engine.history(channel, since=since, limit=limit,
                                             reverse=reverse, history_ttl=options.history_ttl)
        await self.warm.ready(channel)
        self._record(channel, "read", options)
        found = self._read(channel, since, limit, reverse)
        if found is not None:
            return found
        l1 = self.l1_of(channel)
        if l1 is not None and l1.cache.top(channel) is None:
            await self._load(channel, options)
            found = self._read(channel, since, limit, reverse)
            if found is not None:
                return found
        return await self.engine.history(channel, since=since, limit=limit,
                                          reverse=reverse, history_ttl=options.history_ttl)

    def _read(self, channel: str, since: StreamPosition | None, limit: int,
              reverse: bool) -> tuple[list[Publication], StreamPosition] | None:
        l1 = self.l1_of(channel)
        if l1 is None:
            return None
        return l1.cache.read(channel, since, limit, reverse, self._clock())

    async def latest(self, channel: str, options: ChannelOptions,
                     ) -> tuple[Publication | None, StreamPosition]:
        """The channel's latest publication (None if none is held) and its top: from L1
        when it holds the channel and may answer, else the engine (history limit 1,
        reverse), which then fills L1 when that is the whole window (``history_size`` 1).

        Error handling: engine errors propagate."""
        from_l1 = self._from_l1(self.policy(options, channel), channel)
        if from_l1:
            await self.warm.ready(channel)
            self._record(channel, "read", options)
            found = self._read(channel, None, 1, True)
            if found is not None:
                return (found[0][0] if found[0] else None), found[1]
        pubs, top = await self.engine.history(channel, limit=1, reverse=True,
                                              history_ttl=options.history_ttl)
        l1 = self.l1_of(channel)
        if from_l1 and l1 is not None and options.history_size == 1 \
                and l1.cache.top(channel) is None:
            l1.cache.load(channel, pubs, top, size=1, ttl=options.history_ttl,
                          now=self._clock())
        return (pubs[0] if pubs else None), top

    def invalidate(self, channel: str) -> None:
        l1 = self.l1_of(channel)
        if self.enabled and l1 is not None:
            l1.cache.invalidate(channel)

    # -- statistics ---------------------------------------------------------------------
    def statistics(self) -> LayerStats:
        r = self._retired
        total = CacheStats(r.hits, r.misses, r.evictions)
        attached = self.attached
        for l1 in attached:
            s = l1.cache.statistics()
            total.hits += s.hits
            total.misses += s.misses
            total.evictions += s.evictions
            total.bytes += s.bytes
            total.entries += s.entries
        reads = total.hits + total.misses
        return LayerStats(total, sum(len(l1.buffer) for l1 in attached),
                          self._retired_flushed + sum(l1.buffer.flushed for l1 in attached),
                          self.lost,
                          max((l1.buffer.max_lag for l1 in attached), default=0.0),
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
