"""Eviction: which idle channel entries leave a shard's L1 when it is over its budget.

Pure functions over small records, no clock of their own (``now`` is passed in).
Pinned entries (holding write-behind publications the engine does not have yet) are
never chosen: dropping them would make the L1 disagree with the engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["EVICTIONS", "Candidate", "choose_victims", "expired_idle"]

EVICTIONS = ("lru", "lfu", "ttl")


@dataclass(frozen=True, slots=True)
class Candidate:
    """An L1 entry as eviction sees it: size, recency, uses, pinned."""

    key: str
    size: int  # bytes
    last_access: float  # monotonic seconds
    uses: int  # reads and writes since cached
    pinned: bool


def expired_idle(candidates: Iterable[Candidate], now: float, ttl: float) -> list[str]:
    """Unpinned entries idle for ``ttl`` seconds or more (the ``ttl`` policy's sweep)."""
    return [c.key for c in candidates if not c.pinned and now - c.last_access >= ttl]


def choose_victims(candidates: Iterable[Candidate], policy: str, *, over: int,
                   now: float, ttl: float) -> list[str]:
    """Keys to evict, in order, until ``over`` bytes are freed (or nothing evictable is left).

    ``lru``: least recently used first. ``lfu``: fewest uses first, ties by recency.
    ``ttl``: entries past their idle ``ttl`` first, then the closest to expiring (the
    least recently used). Error handling: ValueError for an unknown policy.
    """
    if policy not in EVICTIONS:
        raise ValueError(f"unknown eviction policy {policy!r}")
    pool = [c for c in candidates if not c.pinned]
    if policy == "lfu":
        pool.sort(key=lambda c: (c.uses, c.last_access))
    elif policy == "ttl":
        pool.sort(key=lambda c: (now - c.last_access < ttl, c.last_access))
    else:
        pool.sort(key=lambda c: c.last_access)
    victims, freed = [], 0
    for candidate in pool:
        if freed >= over:
            break
        victims.append(candidate.key)
        freed += candidate.size
    return victims
