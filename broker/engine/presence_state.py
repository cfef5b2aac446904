"""Pure presence and idempotency state for the memory engine, no I/O.

As in ``broker.engine.state``, the clock is an argument (``now``: monotonic seconds).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Generic, TypeVar

from broker.types import ClientInfo

__all__ = ["IdempotencyCache", "PresenceStats", "PresenceTable"]


@dataclass(frozen=True, slots=True)
class PresenceStats:
    """A snapshot of a PresenceTable, for metrics."""

    channels: int
    clients: int


class PresenceTable:
    """channel -> client_id -> (ClientInfo, expires_at), with per-channel user counts.

    Every add pushes (expires_at, channel, client_id) on a heap and reads first pop what
    is due: an expired client is never returned, at amortised cost. A refresh leaves a
    stale entry (skipped); their number is bounded by refresh rate x TTL.
    """

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, tuple[ClientInfo, float]]] = {}
        self._users: dict[str, dict[str, int]] = {}
        self._heap: list[tuple[float, str, str]] = []

    def add(
        self, channel: str, client_id: str, info: ClientInfo, *, ttl: float, now: float
    ) -> None:
        """Insert or refresh a client; it is gone ``ttl`` seconds after its last add.

        Error handling: raises ValueError if ``ttl`` <= 0 (presence must expire, or a
        node that died without cleaning up would leave ghosts forever).
        """
        if ttl <= 0:
            raise ValueError(f"presence ttl must be > 0, got {ttl}")
        clients = self._channels.setdefault(channel, {})
        old = clients.get(client_id)
        if old is None or old[0].user != info.user:
            if old is not None:
                self._uncount(channel, old[0].user)
            users = self._users.setdefault(channel, {})
            users[info.user] = users.get(info.user, 0) + 1
        expires_at = now + ttl
        clients[client_id] = (info, expires_at)
        heapq.heappush(self._heap, (expires_at, channel, client_id))

    def _uncount(self, channel: str, user: str) -> None:
        users = self._users[channel]
        users[user] -= 1
        if not users[user]:
            del users[user]
            if not users:
                del self._users[channel]

    def remove(self, channel: str, client_id: str) -> bool:
        """Remove a client; False if it was not there (removal is idempotent)."""
        clients = self._channels.get(channel)
        entry = clients.pop(client_id, None) if clients is not None else None
        if entry is None:
            return False
        self._uncount(channel, entry[0].user)
        if not clients:
            del self._channels[channel]
        return True

    def get(self, channel: str, now: float) -> dict[str, ClientInfo]:
        """The live clients of a channel (a new dict the caller may keep)."""
        self.sweep(now)
        return {cid: entry[0] for cid, entry in self._channels.get(channel, {}).items()}

    def stats(self, channel: str, now: float) -> tuple[int, int]:
        """(number of live clients, number of distinct users) in a channel."""
        self.sweep(now)
        return len(self._channels.get(channel, ())), len(self._users.get(channel, ()))

    def sweep(self, now: float) -> int:
        """Remove every client expired by ``now``; returns how many were removed."""
        removed = 0
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, channel, client_id = heapq.heappop(heap)
            entry = self._channels.get(channel, {}).get(client_id)
            if entry is not None and entry[1] <= now:
                removed += self.remove(channel, client_id)
        return removed

    def statistics(self) -> PresenceStats:
        return PresenceStats(len(self._channels), sum(map(len, self._channels.values())))


T = TypeVar("T")


class IdempotencyCache(Generic[T]):
    """Results of idempotent publishes: (channel, key) -> result until its TTL passes."""

    def __init__(self) -> None:
        self._results: dict[tuple[str, str], tuple[T, float]] = {}
        self._heap: list[tuple[float, str, str]] = []

    def get(self, channel: str, key: str, now: float) -> T | None:
        """The earlier result for this key in this channel, or None if unknown/expired."""
        entry = self._results.get((channel, key))
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def put(self, channel: str, key: str, result: T, *, ttl: float, now: float) -> None:
        """Remember ``result`` for ``ttl`` seconds (replacing an expired one)."""
        expires_at = now + ttl
        self._results[(channel, key)] = (result, expires_at)
        heapq.heappush(self._heap, (expires_at, channel, key))

    def sweep(self, now: float) -> int:
        """Forget every result expired by ``now``; returns how many were dropped."""
        dropped = 0
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, channel, key = heapq.heappop(heap)
            entry = self._results.get((channel, key))
            if entry is not None and entry[1] <= now:
                del self._results[(channel, key)]
                dropped += 1
        return dropped

    def __len__(self) -> int:
        return len(self._results)
