"""Refresh-ahead: under ``eviction: ttl``, hot channels are reloaded before they expire.

Under the ``ttl`` eviction an L1 entry leaves once idle (no read, no publish) for
``cache.ttl``, and the next read of its channel misses. With ``cache.refresh_ahead`` f
in (0, 1), an entry idle for ``f * ttl`` whose channel is *hot* is reloaded from the
engine (its whole window, what a read miss would load) and its idle clock restarts.

Guarantee: while a channel stays hot and the engine answers, its entry never expires,
so its reads do not miss on expiry (each shard ticks every ``(1 - f) * ttl / 2`` on its
own timer: a due entry gets two chances before it would expire). A cold channel expires
as before. The ticks and the reloads are the shard's timer and effect, so they stop when
the shard does.

Hot: a heat score (broker.cache.heat: reads and publishes, halving every half-life) of
at least ``HOT_SCORE``. A refresh does not heat its channel, so a channel nobody uses
any more cools down and then expires: refresh-ahead never keeps it alive on its own.

Bounded: at most ``MAX_PER_TICK`` reloads per shard tick, hottest first, and one batch in
flight per shard (a tick that finds the previous batch still running skips).

Error handling: a reload that fails (EngineError) is logged and counted; the entry then
expires like a cold one and its next read loads it like any miss. Any other exception
of a reload is logged with its traceback and counted; the ticks go on. Nothing raises
to the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from broker.cache.lru import Candidate
from broker.engine.base import EngineError

if TYPE_CHECKING:
    from broker.cache.layer import CacheLayer
    from broker.cache.shard_l1 import ShardL1
    from broker.config import ChannelOptions

__all__ = ["HOT_SCORE", "MAX_PER_TICK", "RefreshPlanner", "Refresher"]

log = logging.getLogger("chorus.cache")

HOT_SCORE = 3.0  # heat: about three accesses within the heat half-life (minutes)
MAX_PER_TICK = 256
MIN_INTERVAL = 0.005  # seconds: the shortest tick, whatever ttl and fraction say


class RefreshPlanner:
    """Which entries to reload now (pure; time and heat are passed in).

    ``fraction`` 0 (or ``ttl`` 0) disables it: ``due`` is then always empty."""

    def __init__(self, ttl: float, fraction: float, *, hot_score: float = HOT_SCORE,
                 max_per_tick: int = MAX_PER_TICK) -> None:
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"refresh_ahead fraction must be in [0, 1), got {fraction}")
        self.ttl, self.fraction = ttl, fraction
        self.hot_score, self.max_per_tick = hot_score, max_per_tick

    @property
    def enabled(self) -> bool:
        return self.fraction > 0 and self.ttl > 0

    @property
    def lead(self) -> float:
        """Idle seconds after which a hot entry is due."""
        return self.fraction * self.ttl

    @property
    def interval(self) -> float:
        """Tick period: half the slack between due and expiry."""
        return max(MIN_INTERVAL, (self.ttl - self.lead) / 2)

    def due(self, candidates: Iterable[Candidate], now: float,
            score: Callable[[str], float]) -> list[str]:
        """Keys to reload now, hottest first (ties by key), at most ``max_per_tick``.

        Due: unpinned (a pinned entry never expires), idle for ``lead`` or more —
        including one a late tick finds past its ttl but not yet swept — and hot.
        ``score`` is asked only about entries already due by age."""
        if not self.enabled:
            return []
        chosen: list[tuple[float, str]] = []
        for candidate in candidates:
            if candidate.pinned or now - candidate.last_access < self.lead:
                continue
            heat = score(candidate.key)
            if heat >= self.hot_score:
                chosen.append((heat, candidate.key))
        chosen.sort(key=lambda pair: (-pair[0], pair[1]))
        return [key for _, key in chosen[:self.max_per_tick]]


class Refresher:
    """The rules of refresh-ahead for one ``CacheLayer``; each shard calls ``refresh``
    with its own ``ShardL1`` as an effect of its refresh timer (every ``interval``)."""

    def __init__(self, layer: CacheLayer,
                 options: Callable[[str], ChannelOptions] | None) -> None:
        config = layer.config
        fraction = config.refresh_ahead if config.eviction == "ttl" else 0.0
        self.planner = RefreshPlanner(config.ttl, fraction)
        self.layer, self._options = layer, options
        self.refreshes = 0
        self.failures = 0

    @property
    def active(self) -> bool:
        return self.planner.enabled and self.layer.enabled and self._options is not None

    @property
    def interval(self) -> float:
        return self.planner.interval

    @property
    def running(self) -> bool:
        """True while some shard is up to tick (it arms its timer when ``active``)."""
        return self.active and bool(self.layer.attached)

    async def refresh(self, l1: ShardL1) -> None:
        """One tick of shard ``l1``: reload its due entries (hottest first)."""
        layer = self.layer
        now = layer._clock()
        candidates = [Candidate(key, e.bytes, e.last_access, e.uses, e.pinned > 0)
                      for key, e in l1.cache.entries.items()]
        due = self.planner.due(candidates, now, lambda c: layer.heat.score(c, now))
        if due:
            await asyncio.gather(*(self._reload(l1, c) for c in due))

    async def _reload(self, l1: ShardL1, channel: str) -> None:
        assert self._options is not None
        layer = self.layer
        try:
            options = self._options(channel)
            if layer.policy(options, channel) == "off":
                return
            pubs, top = await layer.engine.history(channel, limit=-1,
                                                   history_ttl=options.history_ttl)
            if l1.cache.refresh(channel, pubs, top, size=layer.l1_size(channel, options),
                                ttl=options.history_ttl, now=layer._clock(),
                                full=options.history_size):
                self.refreshes += 1
        except EngineError as error:
            self.failures += 1
            log.warning("cache: refresh-ahead of %s failed: %r", channel, error)
        except Exception:  # one reload: log it, never fail the shard's other reloads
            self.failures += 1
            log.exception("cache: refresh-ahead of %s failed", channel)

    def as_dict(self) -> dict[str, Any]:
        return {"enabled": self.active, "running": self.running,
                "fraction": self.planner.fraction, "refreshes": self.refreshes,
                "failures": self.failures}
