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

``record`` is called on every publish and read and returns the changes made when it
closed a window (no timer needed); the caller applies and logs them. Nothing here
knows about the engine or the loop; the clock is passed in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

__all__ = ["AdaptiveLimits", "AdaptivePolicy", "Change"]


@dataclass(frozen=True, slots=True)
class AdaptiveLimits:
    window: float = 5.0
    write_behind_rate: float = 50.0
    read_ratio: float = 0.1
    cold_read_rate: float = 1.0
    min_l1: int = 1


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
        if limits.window <= 0 or limits.min_l1 < 1:
            raise ValueError("adaptive window must be > 0 and min_l1 >= 1")
        self.limits = limits
        self.policies: dict[str, str] = {}  # channel -> policy, only where it differs
        self.l1_sizes: dict[str, int] = {}  # channel -> L1 size, only where shrunk
        self._base: dict[str, tuple[str, int]] = {}  # configured policy, history size
        self._publishes: Counter[str] = Counter()
        self._reads: Counter[str] = Counter()
        self._window_start = start

    def policy(self, channel: str, configured: str) -> str:
        return self.policies.get(channel, configured)

    def l1_size(self, channel: str, history_size: int) -> int:
        return min(history_size, self.l1_sizes.get(channel, history_size))

    def record(self, channel: str, kind: str, now: float, configured: str,
               history_size: int) -> list[Change]:
        """Count one ``"publish"`` or ``"read"``; the changes if a window closed."""
        self._base[channel] = (configured, history_size)
        (self._publishes if kind == "publish" else self._reads)[channel] += 1
        if now - self._window_start >= self.limits.window:
            return self.decide(now)
        return []

    def decide(self, now: float) -> list[Change]:
        """Close the window: apply the rules to every channel seen or overridden."""
        elapsed = max(now - self._window_start, self.limits.window)
        channels = set(self._publishes) | set(self._reads) | set(self.policies) | \
            set(self.l1_sizes)
        changes: list[Change] = []
        for channel in sorted(channels):
            if channel not in self._base:
                continue
            pubs = self._publishes[channel] / elapsed
            reads = self._reads[channel] / elapsed
            changes += self._decide_policy(channel, pubs, reads, now)
            changes += self._decide_size(channel, reads, now)
        self._publishes.clear()
        self._reads.clear()
        self._window_start = now
        # Bounded: a channel neither seen again nor overridden is forgotten.
        self._base = {c: b for c, b in self._base.items()
                      if c in self.policies or c in self.l1_sizes}
        return changes

    def _decide_policy(self, channel: str, pubs: float, reads: float,
                       now: float) -> list[Change]:
        configured, _ = self._base[channel]
        if configured != "write_through":
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
        _, history_size = self._base[channel]
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

    def forget(self, channel: str) -> None:
        """Drop a channel's overrides (it left the cache for good)."""
        for table in (self.policies, self.l1_sizes, self._base):
            table.pop(channel, None)
