"""Where journey events are kept: the contract, and the in-memory ring of the memory engine.

A ``JourneyStore`` is bounded by construction and written in batches by the journal
actor only (one batch in flight at a time); anyone may read it.

``MemoryJourneyStore`` is one ring of the node's last ``ring_size`` events; a user's
journey is the ring filtered by user. ``RedisJourneyStore`` (``store_redis``) keeps a
capped stream per user and one shared by every node, so a journey that moves between
nodes reads as one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

Event = dict[str, Any]


class JourneyStore(Protocol):
    """Bounded storage of journey events."""

    remote: bool  # True when other nodes write and read the same events

    async def append(self, events: Sequence[Event]) -> None:
        """Store ``events`` (in order). Guarantee: at most the configured bound is kept
        per key, oldest dropped first. Error handling: raises on storage failure; the
        batch is then lost (the journal counts it), never retried out of order."""

    async def user_events(self, user: str, limit: int) -> list[Event]:
        """The user's last ``limit`` events, oldest first, from every node the store
        covers."""

    async def recent(self, limit: int) -> list[Event]:
        """The last ``limit`` events of every user (and of connections with none)."""

    async def last_disconnects(self, users: Iterable[str]) -> dict[str, Event]:
        """Each user's most recent ``disconnect`` event where the store has one."""

    async def close(self) -> None:
        """Release connections (no-op in memory)."""


class MemoryJourneyStore:
    """The node's last ``ring_size`` events in one ring (``collections.deque``)."""

    remote = False

    def __init__(self, ring_size: int) -> None:
        if ring_size < 1:
            raise ValueError("ring_size must be >= 1")
        self.ring: deque[Event] = deque(maxlen=ring_size)

    async def append(self, events: Sequence[Event]) -> None:
        self.ring.extend(events)

    def append_now(self, events: Sequence[Event]) -> None:
        """Synchronous append: the memory store needs no effect."""
        self.ring.extend(events)

    async def user_events(self, user: str, limit: int) -> list[Event]:
        found = [e for e in reversed(self.ring) if e.get("user") == user][:limit]
        found.reverse()  # recorded order, so a sort by time keeps it for equal times
        return sorted(found, key=_time)

    async def recent(self, limit: int) -> list[Event]:
        ring = self.ring
        return list(ring)[-limit:] if limit < len(ring) else list(ring)

    async def last_disconnects(self, users: Iterable[str]) -> dict[str, Event]:
        wanted = set(users)
        found: dict[str, Event] = {}
        for event in reversed(self.ring):
            user = event.get("user")
            if event.get("event") == "disconnect" and user in wanted and user not in found:
                found[user] = event
        return found

    async def close(self) -> None:
        return None


def _time(event: Event) -> float:
    return float(event.get("t", 0.0))
