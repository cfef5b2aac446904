"""RedisJourneyStore: a capped Redis stream per user and one shared by every node.

Keys (a user's stream under its own hash tag, so it lives in one Cluster slot)::

    <prefix>:journey:{<user>}   stream, field j = the event as JSON; trimmed with
                                 MAXLEN ~ stream_maxlen; expires stream_ttl after
                                 its last event
    <prefix>:journey:all        stream of every event of every node (connections
                                 without a user too); MAXLEN ~ all_maxlen

A batch is one pipeline per Redis client (one round trip on a standalone server):
XADD with approximate trimming (``MAXLEN ~``, which Redis does in whole macro-nodes,
so it costs nearly nothing) and PEXPIRE per user touched. Journeys that move between
nodes read as one because every node writes the same per-user stream.

Error handling: Redis and socket errors become ``EngineError``; the journal actor
counts a failed batch and goes on (journeys are diagnostics, never a reason to stop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from redis.exceptions import RedisError

from broker.engine.base import EngineError

Event = dict[str, Any]

__all__ = ["RedisJourneyStore"]


class RedisJourneyStore:
    """JourneyStore over Redis streams; ``client_for(key)`` gives the client of a key."""

    remote = True

    def __init__(self, client_for: Callable[[str], Any], *, prefix: str = "chorus",
                 stream_maxlen: int = 500, all_maxlen: int = 100_000,
                 stream_ttl: float = 86400.0) -> None:
        if stream_maxlen < 1 or all_maxlen < 1 or stream_ttl <= 0:
            raise ValueError("stream_maxlen and all_maxlen must be >= 1, stream_ttl > 0")
        self._client_for = client_for
        self.prefix = prefix
        self.stream_maxlen, self.all_maxlen = stream_maxlen, all_maxlen
        self.ttl_ms = max(1, int(stream_ttl * 1000))

    def user_key(self, user: str) -> str:
        return f"{self.prefix}:journey:{{{user}}}"

    @property
    def all_key(self) -> str:
        return f"{self.prefix}:journey:all"

    async def _call(self, what: Any) -> Any:
        try:
            return await what
        except (RedisError, OSError, TimeoutError) as exc:
            raise EngineError(f"redis journeys: {type(exc).__name__}: {exc}") from exc

    async def append(self, events: Sequence[Event]) -> None:
        pipes: dict[int, Any] = {}

        def pipe(key: str) -> Any:
            client = self._client_for(key)
            found = pipes.get(id(client))
            if found is None:
                found = pipes[id(client)] = client.pipeline(transaction=False)
            return found

        touched: set[str] = set()
        for event in events:
            body = orjson.dumps(event)
            pipe(self.all_key).xadd(self.all_key, {"j": body}, maxlen=self.all_maxlen,
                                    approximate=True)
            user = event.get("user")
            if user:
                key = self.user_key(str(user))
                pipe(key).xadd(key, {"j": body}, maxlen=self.stream_maxlen, approximate=True)
                touched.add(key)
        for key in touched:
            pipe(key).pexpire(key, self.ttl_ms)
        for pipeline in pipes.values():
            await self._call(pipeline.execute())

    async def _read(self, key: str, limit: int) -> list[Event]:
        entries = await self._call(self._client_for(key).xrevrange(key, count=limit))
        return [orjson.loads(fields[b"j"]) for _, fields in reversed(entries)]

    async def user_events(self, user: str, limit: int) -> list[Event]:
        events = await self._read(self.user_key(user), limit)
        return sorted(events, key=lambda e: float(e.get("t", 0.0)))

    async def recent(self, limit: int) -> list[Event]:
        return await self._read(self.all_key, limit)

    async def last_disconnects(self, users: Iterable[str], depth: int = 20) -> dict[str, Event]:
        """Looks at each user's last ``depth`` events (one XREVRANGE each; the journal
        actor asks, off the connection path)."""
        found: dict[str, Event] = {}
        for user in users:
            for event in reversed(await self._read(self.user_key(user), depth)):
                if event.get("event") == "disconnect":
                    found[user] = event
                    break
        return found

    async def close(self) -> None:
        return None  # the engine owns (and closes) the clients
