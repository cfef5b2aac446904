"""MemoryNotificationStore: the single-node NotificationStore (see broker.notify).

Everything is synchronous under the hood, so each call is atomic on the event loop.
Durable only for the life of the process — the same promise as the memory engine.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from broker.engine.base import EngineError
from broker.notify import Notification, parse_id

if TYPE_CHECKING:
    from broker.notify import NotificationStore

__all__ = ["MemoryNotificationStore"]


class MemoryNotificationStore:
    """Per-user ordered inboxes. ``clock`` returns unix seconds (injected for tests)."""

    def __init__(self, *, retention_count: int = 100, retention_age: float = 7 * 86400.0,
                 clock: Callable[[], float] = time.time) -> None:
        if retention_count < 1 or retention_age <= 0:
            raise ValueError("retention_count must be >= 1 and retention_age > 0")
        self.retention_count, self.retention_age = retention_count, retention_age
        self._clock = clock
        self._inboxes: dict[str, OrderedDict[str, Notification]] = {}
        self._last: dict[str, tuple[int, int]] = {}
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise EngineError("notification store is closed")

    def _next_id(self, user: str, now_ms: int) -> str:
        last_ms, last_seq = self._last.get(user, (0, -1))
        ms, seq = (now_ms, 0) if now_ms > last_ms else (last_ms, last_seq + 1)
        self._last[user] = (ms, seq)
        return f"{ms}-{seq}"

    def _trim(self, user: str, now_ms: int) -> OrderedDict[str, Notification]:
        inbox = self._inboxes.get(user)
        if inbox is None:
            return OrderedDict()
        oldest = now_ms - int(self.retention_age * 1000)
        while inbox and (len(inbox) > self.retention_count
                         or next(iter(inbox.values())).time < oldest):
            inbox.popitem(last=False)
        if not inbox:
            del self._inboxes[user]
        return inbox

    async def add(self, user: str, payload: bytes, *, type: str = "",
                  ttl: float = 0.0) -> Notification:
        self._check()
        now_ms = int(self._clock() * 1000)
        n = Notification(self._next_id(user, now_ms), user, type, bytes(payload), now_ms,
                         now_ms + int(ttl * 1000) if ttl > 0 else 0)
        self._inboxes.setdefault(user, OrderedDict())[n.id] = n
        self._trim(user, now_ms)
        return n

    async def list(self, user: str, *, unread_only: bool = False,
                   limit: int = 0) -> list[Notification]:
        self._check()
        now_ms = int(self._clock() * 1000)
        found = [n for n in self._trim(user, now_ms).values()
                 if not (n.expire_at and n.expire_at <= now_ms)
                 and not (unread_only and n.read)]
        return found[-limit:] if limit > 0 else found

    async def mark_read(self, user: str, ids: Sequence[str]) -> int:
        self._check()
        for nid in ids:
            parse_id(nid)  # ValueError for a malformed id, as on Redis
        inbox = self._trim(user, int(self._clock() * 1000))
        marked = 0
        for nid in ids:
            n = inbox.get(nid)
            if n is not None and not n.read:
                inbox[nid] = replace(n, read=True)
                marked += 1
        return marked

    async def close(self) -> None:
        self._closed = True


if TYPE_CHECKING:
    _conforms: type[NotificationStore] = MemoryNotificationStore
