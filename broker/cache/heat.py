"""Channel hotness for prewarm: access counts that outlive a shard's L1 (pure).

The node's cache layer counts every read and write per channel here, not in the shard's
L1, so a restarted shard (whose L1 died with it) still knows which of its channels were
hot and can reload them first. Counts decay by half every ``half_life`` seconds so an
old burst does not outrank today's traffic. Bounded: past ``max_channels`` the coldest
half is forgotten.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["HeatMap"]


class HeatMap:
    def __init__(self, half_life: float = 300.0, max_channels: int = 10_000) -> None:
        self.half_life, self.max_channels = half_life, max_channels
        self._heat: dict[str, tuple[float, float]] = {}  # channel -> (score, at)

    def __len__(self) -> int:
        return len(self._heat)

    def touch(self, channel: str, now: float, weight: float = 1.0) -> None:
        self._heat[channel] = (self.score(channel, now) + weight, now)
        if len(self._heat) > self.max_channels:
            keep = self.hottest(self.max_channels // 2, now)
            self._heat = {c: self._heat[c] for c in keep}

    def score(self, channel: str, now: float) -> float:
        score, at = self._heat.get(channel, (0.0, now))
        return score * math.pow(0.5, max(0.0, now - at) / self.half_life)

    def hottest(self, n: int, now: float,
                where: Callable[[str], bool] = lambda _: True) -> list[str]:
        """Up to ``n`` channels passing ``where``, hottest first (ties by name)."""
        ranked = sorted((c for c in self._heat if where(c)),
                        key=lambda c: (-self.score(c, now), c))
        return ranked[:n]

    def forget(self, channel: str) -> None:
        self._heat.pop(channel, None)
