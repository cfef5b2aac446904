"""Connect rate per client IP: one token bucket per address, in bounded memory.

Pure logic, no I/O: the WebSocket endpoint asks ``allow(ip, now)`` before it creates a
connection actor, and closes a refused socket with 3013 "too many requests" (a
reconnecting code: the SDK backs off and tries again).

Resource handling:
    At most ``max_addresses`` buckets are kept. A bucket that has refilled completely
    carries no information (a fresh one would be identical), so full buckets are dropped
    first; if every bucket is still draining, the oldest is dropped. A flood from many
    addresses therefore costs bounded memory, never the heap.
"""

from __future__ import annotations

from broker.config import RateLimitConfig
from broker.connection.state import TokenBucket

DEFAULT_MAX_ADDRESSES = 65536


class ConnectRateLimiter:
    """``rate_per_second`` new connections per IP, bursts up to ``burst``."""

    __slots__ = ("_buckets", "burst", "enabled", "max_addresses", "rate")

    def __init__(self, config: RateLimitConfig,
                 max_addresses: int = DEFAULT_MAX_ADDRESSES) -> None:
        self.enabled = config.enabled
        self.rate = config.rate_per_second
        self.burst = config.burst
        self.max_addresses = max_addresses
        self._buckets: dict[str, TokenBucket] = {}  # insertion order: oldest first

    def allow(self, address: str, now: float) -> bool:
        """Spend one connect token of ``address``; False means refuse this connection."""
        if not self.enabled:
            return True
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.max_addresses:
                self._evict(now)
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict(self, now: float) -> None:
        # A bucket is full again after burst / rate seconds without use.
        refill = self.burst / self.rate if self.rate > 0 else float("inf")
        idle = [ip for ip, bucket in self._buckets.items() if now - bucket.stamp >= refill]
        for ip in idle:
            del self._buckets[ip]
        if len(self._buckets) >= self.max_addresses:
            del self._buckets[next(iter(self._buckets))]
