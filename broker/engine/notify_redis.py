"""RedisNotificationStore: a Redis stream per user (see broker.notify for the contract).

Keys (one hash tag per user, so both live in one Cluster slot)::

    <prefix>:notify:{<user>}       stream: fields t (type), p (payload), e (ttl ms)
    <prefix>:notify:{<user>}:read  set of the ids marked read

``add`` runs one Lua script on the primary: XADD with ``MAXLEN = retention_count``,
XTRIM ``MINID`` (Redis time - retention_age), and PEXPIRE of both keys to
retention_age, so an idle inbox disappears by itself. The stream id's milliseconds are
the notification's time (Redis's clock); expiry by ``ttl`` and age filtering on reads
use this node's clock (skew between them shifts expiry by the skew).

Replica reads: with ``read_client`` (e.g. a Sentinel replica, see ``replica_client``)
``list`` reads there and tolerates replication lag (a notification just added may be
missing, a just-marked one may still look unread); ``add`` and ``mark_read`` always go
to the primary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from broker.engine.base import EngineError
from broker.engine.redis_scripts import Script
from broker.notify import Notification, parse_id

if TYPE_CHECKING:
    from broker.config import Config
    from broker.notify import NotificationStore

__all__ = ["RedisNotificationStore", "replica_client"]

# KEYS: stream, read set. ARGV: retention count, retention age ms, type, payload, ttl ms.
# Returns the new id.
ADD = Script("""
local id = redis.call('xadd', KEYS[1], 'MAXLEN', '=', ARGV[1], '*',
                      't', ARGV[3], 'p', ARGV[4], 'e', ARGV[5])
local now = redis.call('time')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[2])
if oldest > 0 then redis.call('xtrim', KEYS[1], 'MINID', tostring(oldest)) end
redis.call('pexpire', KEYS[1], ARGV[2])
if redis.call('exists', KEYS[2]) == 1 then redis.call('pexpire', KEYS[2], ARGV[2]) end
return id
""")

# KEYS: stream, read set. ARGV: retention age ms, ids... Returns how many became read.
# Only ids still in the stream are added; read ids trimmed from the stream are dropped
# once the set outgrows the stream, so the set stays bounded by the retention.
MARK_READ = Script("""
local marked = 0
for i = 2, #ARGV do
  if #redis.call('xrange', KEYS[1], ARGV[i], ARGV[i], 'COUNT', 1) > 0 then
    marked = marked + redis.call('sadd', KEYS[2], ARGV[i])
  end
end
if marked > 0 then
  redis.call('pexpire', KEYS[2], ARGV[1])
  if redis.call('scard', KEYS[2]) > redis.call('xlen', KEYS[1]) then
    for _, id in ipairs(redis.call('smembers', KEYS[2])) do
      if #redis.call('xrange', KEYS[1], id, id, 'COUNT', 1) == 0 then
        redis.call('srem', KEYS[2], id)
      end
    end
  end
end
return marked
""")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisNotificationStore:
    """NotificationStore over Redis; ``client_for(key)`` returns the primary's client
    for a key (``RedisEngine.topology.client``), ``read_client`` an optional replica."""

    def __init__(self, client_for: Callable[[str], Any], *, prefix: str = "chorus",
                 retention_count: int = 100, retention_age: float = 7 * 86400.0,
                 read_client: Any = None, clock: Callable[[], float] = time.time) -> None:
        if retention_count < 1 or retention_age <= 0:
            raise ValueError("retention_count must be >= 1 and retention_age > 0")
        self._client_for, self._read_client = client_for, read_client
        self.prefix = prefix
        self.retention_count, self.retention_age = retention_count, retention_age
        self._clock = clock
        self._closed = False

    def stream_key(self, user: str) -> str:
        return f"{self.prefix}:notify:{{{user}}}"

    def read_key(self, user: str) -> str:
        return f"{self.prefix}:notify:{{{user}}}:read"

    def _check(self) -> None:
        if self._closed:
            raise EngineError("notification store is closed")

    async def _call(self, what: Any) -> Any:
        """Await a Redis call. Error handling: Redis/socket errors become EngineError."""
        try:
            return await what
        except (RedisError, OSError, TimeoutError) as exc:
            raise EngineError(f"redis notify: {type(exc).__name__}: {exc}") from exc

    async def add(self, user: str, payload: bytes, *, type: str = "",
                  ttl: float = 0.0) -> Notification:
        self._check()
        keys = [self.stream_key(user), self.read_key(user)]
        ttl_ms = int(ttl * 1000) if ttl > 0 else 0
        args = [self.retention_count, _ms(self.retention_age), type, payload, ttl_ms]
        raw = await self._call(ADD(self._client_for(keys[0]), keys, args))
        nid = raw.decode() if isinstance(raw, bytes) else str(raw)
        at = parse_id(nid)[0]
        return Notification(nid, user, type, bytes(payload), at, at + ttl_ms if ttl_ms else 0)

    async def list(self, user: str, *, unread_only: bool = False,
                   limit: int = 0) -> list[Notification]:
        self._check()
        key = self.stream_key(user)
        client = self._read_client or self._client_for(key)
        oldest = int((self._clock() - self.retention_age) * 1000)
        entries = await self._call(client.xrange(key, f"{max(oldest, 0)}-0", "+"))
        read = {m.decode() for m in await self._call(client.smembers(self.read_key(user)))}
        now_ms = int(self._clock() * 1000)
        found = []
        for raw_id, fields in entries:
            nid = raw_id.decode()
            at, ttl_ms = parse_id(nid)[0], int(fields.get(b"e", b"0"))
            expire_at = at + ttl_ms if ttl_ms else 0
            if (expire_at and expire_at <= now_ms) or (unread_only and nid in read):
                continue
            found.append(Notification(nid, user, fields.get(b"t", b"").decode(),
                                      fields.get(b"p", b"null"), at, expire_at, nid in read))
        return found[-limit:] if limit > 0 else found

    async def mark_read(self, user: str, ids: Sequence[str]) -> int:
        self._check()
        if not ids:
            return 0
        for nid in ids:
            parse_id(nid)  # ValueError before Redis sees a malformed id
        keys = [self.stream_key(user), self.read_key(user)]
        client = self._client_for(keys[0])
        return int(await self._call(MARK_READ(client, keys, [_ms(self.retention_age), *ids])))

    async def close(self) -> None:
        """Closes only the replica client it may own; the primary belongs to the engine."""
        if self._closed:
            return
        self._closed = True
        if self._read_client is not None:
            await self._read_client.aclose()


def replica_client(config: Config) -> Any:
    """A client for a replica of the Sentinel service ``config`` names, else None.

    redis-py's replica client falls back to the primary when no replica is up.
    """
    rc = config.engine.redis
    if not rc.sentinel_address:
        return None
    from redis.asyncio.sentinel import Sentinel as SentinelClient

    from broker.engine.redis_link import parse_address

    addresses = [parse_address(a) for a in rc.sentinel_address]
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": rc.io_timeout}
    if rc.sentinel_password:
        sentinel_kwargs["password"] = rc.sentinel_password
    sentinel = SentinelClient([(a.host, a.port) for a in addresses],
                              sentinel_kwargs=sentinel_kwargs, db=rc.db,
                              username=rc.user or None, password=rc.password or None,
                              socket_timeout=rc.io_timeout)
    return sentinel.slave_for(rc.sentinel_master_name)


if TYPE_CHECKING:
    _conforms: type[NotificationStore] = RedisNotificationStore
