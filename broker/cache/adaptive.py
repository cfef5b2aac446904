"""Adaptive cache policy: per channel, from observed publish/read rates (pure).

Every ``window`` seconds the rates seen in that window decide, per channel:

- **Write policy.** A channel configured ``write_through`` moves to ``write_behind``
  while it is write-heavy: at least ``write_behind_rate`` publishes/s and at most
  ``read_ratio`` reads per publish. It moves back once it clearly is not (under half
  that rate, or over twice that read ratio), the gap between the two thresholds keeping
  a channel near the line from flapping. Channels configured otherwise are left alone:
  an explicit ``write_behind`` or ``read_through`` is the operator's call.
- **L1 share.** A channel read at ``cold_read_rate`` reads/s or more keeps its whole
  history window in L1; one read under half that keeps only its newest ``min_l1``
  publications (the rest is read from the engine), leaving the shard's memory budget
  to the channels that are read. The budget itself still bounds the total (eviction).

**Single writer.** Write-behind acknowledges offsets from this node's L1, which is only
safe when no other node or worker writes the channel's stream. ``write_behind=False``
(the default whenever the config does not establish a single writer, see
``limits_from``) means write_behind is never chosen.

**Bounded.** A channel is tracked (its counts, configured policy and overrides) only
while it is active: one without any publish or read for ``forget_after`` windows is
forgotten, and past ``max_channels`` tracked channels the least recently active one is
forgotten at once. Forgetting returns a channel to its configured policy and full L1
size, reported as changes like any other, so the caller applies them the same way.

``record`` is called on every publish and read and returns the changes made when it
closed a window or forgot a channel (no timer needed); the caller applies and logs
them. Nothing here knows about the engine or the loop; the clock is passed in.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.config import CacheConfig

__all__ = ["AdaptiveLimits", "AdaptivePolicy", "Change", "limits_from"]

log = logging.getLogger("chorus.cache")


@dataclass(frozen=True, slots=True)
class AdaptiveLimits:
    window: float = 5.0
    write_behind_rate: float = 50.0
    read_ratio: float = 0.1
    cold_read_rate: float = 1.0
    min_l1: int = 1
    write_behind: bool = False  # may write_behind be chosen? (only with a single writer)
    forget_after: int = 12  # windows without activity before a channel is forgotten
    max_channels: int = 10_000  # channels tracked at most (least recently active go)


def limits_from(config: CacheConfig, engine_type: str) -> AdaptiveLimits:
    """The adaptive limits of ``config`` on an ``engine_type`` engine. When other nodes
    or workers may write the same streams (``CacheConfig.other_writers``), write_behind
    is never chosen; that is logged here, once, with the reason."""
    others = config.other_writers(engine_type)
    if others and config.adaptive:
        log.info("adaptive cache: write_behind is never chosen: %s", others)
    return AdaptiveLimits(
        config.adaptive_window, config.adaptive_write_behind_rate,
        config.adaptive_read_ratio, config.adaptive_cold_read_rate, config.adaptive_min_l1,
        write_behind=not others, forget_after=config.adaptive_forget_after,
        max_channels=config.adaptive_max_channels)


@dataclass(frozen=True, slots=True)
class Change:
    channel: str
    kind: str  # "policy" | "l1_size"
    old: str | int
    new: str | int
    reason: str
    at: float

    def as_dict(self) -> dict[str, object]:
        return {"channel": self.channel, "kind": self.kind, "old": self.old,
                "new": self.new, "reason": self.reason, "at": self.at}


class AdaptivePolicy:
    """Per-channel overrides of the configured policy and L1 size, and their history."""

    def __init__(self, limits: AdaptiveLimits, start: float = 0.0) -> None:
        if limits.window <= 0 or limits.min_l1 < 1 or limits.forget_after < 1 or \
                limits.max_channels < 1:
            raise ValueError("adaptive window must be > 0, and min_l1, forget_after "
                             "and max_channels >= 1")
        self.limits = limits
        self.policies: dict[str, str] = {}  # channel -> policy, only where it differs
        self.l1_sizes: dict[str, int] = {}  # channel -> L1 size, only where shrunk
        # Every tracked channel: configured policy, history size, last activity; least
        # recently active first. The counters and overrides hold tracked channels only.
        self._base: OrderedDict[str, tuple[str, int, float]] = OrderedDict()
        self._publishes: Counter[str] = Counter()
        self._reads: Counter[str] = Counter()
        self._window_start = start

    def __len__(self) -> int:
        """Channels tracked now (at most ``limits.max_channels``)."""
        return len(self._base)

    def policy(self, channel: str, configured: str) -> str:
        return self.policies.get(channel, configured)

    def l1_size(self, channel: str, history_size: int) -> int:
        return min(history_size, self.l1_sizes.get(channel, history_size))

    def record(self, channel: str, kind: str, now: float, configured: str,
               history_size: int) -> list[Change]:
        """Count one ``"publish"`` or ``"read"``; the changes if a window closed or a
        channel was forgotten to stay within ``max_channels``."""
        self._base[channel] = (configured, history_size, now)
        self._base.move_to_end(channel)
        (self._publishes if kind == "publish" else self._reads)[channel] += 1
        changes: list[Change] = []
        while len(self._base) > self.limits.max_channels:
            oldest = next(iter(self._base))
            changes += self._forget(oldest, now, f"over {self.limits.max_channels} "
                                                 "tracked channels, least recently active")
        if now - self._window_start >= self.limits.window:
            changes += self.decide(now)
        return changes

    def decide(self, now: float) -> list[Change]:
        """Close the window: apply the rules to every channel seen or overridden."""
        elapsed = max(now - self._window_start, self.limits.window)
        channels = set(self._publishes) | set(self._reads) | set(self.policies) | \
            set(self.l1_sizes)
        changes: list[Change] = []
        for channel in sorted(channels):
            pubs = self._publishes[channel] / elapsed
            reads = self._reads[channel] / elapsed
            changes += self._decide_policy(channel, pubs, reads, now)
            changes += self._decide_size(channel, reads, now)
        self._publishes.clear()
        self._reads.clear()
        self._window_start = now
        idle_since = now - self.limits.forget_after * self.limits.window
        for channel in list(self._base):  # least recently active first
            if self._base[channel][2] > idle_since:
                break
            changes += self._forget(channel, now,
                                    f"idle for {self.limits.forget_after} windows")
        # A channel seen this window but left as configured needs no tracking.
        for channel in [c for c in self._base
                        if c not in self.policies and c not in self.l1_sizes]:
            del self._base[channel]
        return changes

    def _decide_policy(self, channel: str, pubs: float, reads: float,
                       now: float) -> list[Change]:
        configured, _, _ = self._base[channel]
        if configured != "write_through" or not self.limits.write_behind:
            return []
        lim = self.limits
        current = self.policy(channel, configured)
        rates = f"{pubs:.1f} pub/s, {reads:.1f} read/s"
        if current == "write_through" and pubs >= lim.write_behind_rate and \
                reads <= lim.read_ratio * pubs:
            self.policies[channel] = "write_behind"
            return [Change(channel, "policy", current, "write_behind",
                           f"write-heavy: {rates}", now)]
        if current == "write_behind" and (pubs < lim.write_behind_rate / 2 or
                                          reads > 2 * lim.read_ratio * pubs):
            del self.policies[channel]
            return [Change(channel, "policy", current, "write_through",
                           f"no longer write-heavy: {rates}", now)]
        return []

    def _decide_size(self, channel: str, reads: float, now: float) -> list[Change]:
        _, history_size, _ = self._base[channel]
        lim = self.limits
        current = self.l1_size(channel, history_size)
        small = min(lim.min_l1, history_size)
        if current > small and reads < lim.cold_read_rate / 2:
            self.l1_sizes[channel] = small
            return [Change(channel, "l1_size", current, small,
                           f"cold: {reads:.1f} read/s", now)]
        if current < history_size and reads >= lim.cold_read_rate:
            del self.l1_sizes[channel]
            return [Change(channel, "l1_size", current, history_size,
                           f"read: {reads:.1f} read/s", now)]
        return []

    def _forget(self, channel: str, now: float, why: str) -> list[Change]:
        """Stop tracking ``channel``: the changes returning it to its configuration."""
        configured, history_size, _ = self._base[channel]
        changes = []
        policy = self.policies.get(channel)
        if policy is not None:
            changes.append(Change(channel, "policy", policy, configured,
                                  f"forgotten: {why}", now))
        size = self.l1_sizes.get(channel)
        if size is not None:
            changes.append(Change(channel, "l1_size", size, history_size,
                                  f"forgotten: {why}", now))
        self.forget(channel)
        return changes

    def forget(self, channel: str) -> None:
        """Drop everything known about a channel (it left the cache for good)."""
        for table in (self.policies, self.l1_sizes, self._base, self._publishes,
                      self._reads):
            table.pop(channel, None)
