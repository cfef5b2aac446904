"""Prewarm: a (re)started shard reloads its hottest channels from the engine first.

Hotness is the cache layer's ``HeatMap`` (reads and writes per channel, kept by the node
across shard restarts). A new node has none: it reads the hot list the previous node
saved in the engine at its graceful shutdown (``save_hot``: one publication in the
internal stream ``HOT_STREAM``, history size 1), so a restarted node behind Redis warms
the channels that were hot before it went down.

Guarantee: while a shard warms, a read or write-behind publish of a channel it is
warming waits for the warm-up to finish (``ready``), so the first read after a restart
of a warmed channel is an L1 hit. Channels it is not warming are served at once (from
the engine, as any miss). Each warm-up is timed, logged and kept for the stats.

Error handling: a channel the engine fails to load is skipped (logged); it is then
loaded on its first read, like any miss. Nothing here raises to the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from broker.engine.base import EngineError

if TYPE_CHECKING:
    from broker.cache.layer import CacheLayer
    from broker.config import ChannelOptions

__all__ = ["HOT_STREAM", "Prewarmer", "Warmup"]

log = logging.getLogger("chorus.cache")

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[Any]"]

HOT_STREAM = "__chorus.cache.hot"  # not a client channel name: no namespace has "__"
HOT_TTL = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Warmup:
    """The outcome of one shard's pre-warm: channels loaded, failures, time."""

    shard: int
    channels: int  # loaded into L1
    failed: int
    seconds: float  # from start to the last channel loaded
    at: float  # wall clock, when it finished

    def as_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "channels": self.channels, "failed": self.failed,
                "ms": round(self.seconds * 1000, 3), "at": self.at}


class Prewarmer:
    def __init__(self, layer: CacheLayer,
                 options: Callable[[str], ChannelOptions] | None) -> None:
        self.layer = layer
        self._options = options
        self._warming: dict[int, tuple[set[str], asyncio.Task[Any]]] = {}
        self._saved: asyncio.Task[list[str]] | None = None
        self.history: deque[Warmup] = deque(maxlen=64)

    def start(self, index: int, spawn: Spawn | None = None) -> None:
        """Begin warming shard ``index``: ``spawn`` runs the warm-up (the shard passes
        its ``run_effect``, so a warm-up dies with its shard; default: a loop task).
        Needs a running loop; without one, or with ``cache.prewarm`` 0 or the cache
        off, nothing is warmed."""
        count = self.layer.config.prewarm
        if count <= 0 or self._options is None or not self.layer.enabled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        layer, now = self.layer, self.layer._clock()
        channels = layer.heat.hottest(count, now, lambda c: layer._shard_of(c) == index)
        if not channels and len(layer.heat) == 0:  # a new node: the previous one's list
            if self._saved is None:
                self._saved = loop.create_task(self._read_saved())
            saved = self._saved
            coro = self._warm(index, [], saved)
        else:
            coro = self._warm(index, channels, None)
        self._warming[index] = (set(channels), (spawn or loop.create_task)(coro))

    async def ready(self, channel: str) -> None:
        """Return once ``channel`` is not being warmed (see the guarantee); also when
        the warm-up ends early because its shard stopped."""
        warming = self._warming.get(self.layer._shard_of(channel))
        if warming is not None and (channel in warming[0] or not warming[0]):
            await asyncio.wait([warming[1]])

    async def _warm(self, index: int, channels: list[str],
                    saved: asyncio.Task[list[str]] | None) -> None:
        layer = self.layer
        started = time.perf_counter()
        try:
            if saved is not None:
                hot = await asyncio.shield(saved)
                channels = [c for c in hot if layer._shard_of(c) == index]
                channels = channels[:layer.config.prewarm]
                self._warming[index][0].update(channels)
            results = await asyncio.gather(*(self._load(c) for c in channels))
        finally:
            current = self._warming.get(index)
            if current is not None and current[1] is asyncio.current_task():
                del self._warming[index]
        warmup = Warmup(index, sum(results), len(results) - sum(results),
                        time.perf_counter() - started, time.time())
        self.history.append(warmup)
        if channels:
            log.info("cache: shard %d prewarmed %d channels in %.1f ms (%d failed)",
                     index, warmup.channels, warmup.seconds * 1000, warmup.failed)

    async def _load(self, channel: str) -> bool:
        assert self._options is not None
        options = self._options(channel)
        layer = self.layer
        if layer.policy(options, channel) == "off":
            return False
        l1 = layer.l1_of(channel)
        if l1 is not None and l1.cache.top(channel) is not None:
            return True
        try:
            await layer._load(channel, options)
        except EngineError as error:
            log.warning("cache: prewarm of %s failed: %r", channel, error)
            return False
        return True

    async def _read_saved(self) -> list[str]:
        try:
            pubs, _ = await self.layer.engine.history(HOT_STREAM, limit=1, reverse=True,
                                                      history_ttl=HOT_TTL)
            hot = orjson.loads(pubs[0].data) if pubs else []
        except (EngineError, orjson.JSONDecodeError) as error:
            log.warning("cache: could not read the saved hot-channel list: %r", error)
            return []
        return [c for c in hot if isinstance(c, str)] if isinstance(hot, list) else []

    async def save_hot(self) -> None:
        """Store this node's hottest channels in the engine for the next node."""
        layer = self.layer
        count = layer.config.prewarm * len(layer.caches)  # every shard's share
        hot = layer.heat.hottest(count, layer._clock())
        if not hot or count <= 0:
            return
        try:
            await layer.engine.publish(HOT_STREAM, orjson.dumps(hot), info=None, tags=None,
                                       history_size=1, history_ttl=HOT_TTL)
        except EngineError as error:
            log.warning("cache: could not save the hot-channel list: %r", error)

    def as_dict(self) -> dict[str, Any]:
        last = self.history[-1].as_dict() if self.history else None
        return {"warming": sorted(self._warming), "last": last,
                "recent": [w.as_dict() for w in self.history],
                "max_ms": max((round(w.seconds * 1000, 3) for w in self.history),
                              default=0.0)}
