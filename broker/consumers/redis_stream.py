"""The Redis Stream consumer: publish what the application added to Redis streams.

The application adds entries with ``XADD <stream> * method publish payload '{...}'``
(field names ``method_value`` and ``payload_value``, Centrifugo's defaults). Every
stream is one partition, consumed through the consumer group ``consumer_group``:

1. Ownership: a node takes a stream with a lease key (``SET ... NX PX``, value unique to
   this consumer incarnation, renewed every third of ``visibility_timeout``); only the
   holder reads the stream, so its entries are published in order.
2. On taking a stream, and after any failure, the holder first claims every pending
   entry of the group (``XAUTOCLAIM`` from ``0-0``): entries read by a node that died
   before acknowledging them, in id order. Then it reads new entries
   (``XREADGROUP ... >``), blocking briefly when there are none.
3. Each entry is published through the node; entries the engine acknowledged are
   acknowledged (``XACK``) after the publish, never before.

Guarantees: at least once, and exactly once for subscribers within the engine's
idempotency window: a reclaimed entry was perhaps published already, and its derived
idempotency key (``stream:<name>:<entry id>``) makes the engine suppress it. In order
per stream while one node holds it; a holder stalled past ``visibility_timeout`` loses
the stream, and until it notices (at its next renewal) both may publish, which the
idempotency keys keep from duplicating but not from reordering. Entries stay in the
stream after the acknowledgement: trim it when adding (``XADD ... MAXLEN ~ 100000``).

Error handling: Redis and engine failures are retried with backoff, the failed entry
first; an entry that can never be published is acknowledged, logged and counted.
Anything else fails the owning actor, whose supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from broker.config.consumers import RedisStreamConsumerConfig
from broker.consumers.commands import InvalidMessage, decode, dispatch
from broker.consumers.state import Backoff, Batch, ConsumerStats, Lease

if TYPE_CHECKING:
    from broker.node import Node

log = logging.getLogger("chorus.consumers.redis_stream")

TEMPORARY = (OSError, TimeoutError, RedisError)
READ_COUNT = 100  # entries per read or claim
LAG_INTERVAL = 2.0
# Take the lease when free, or keep it when it is already ours (renewal).
TAKE_OR_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder == false then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class LeaseLost(Exception):
    """Another node holds the stream now (our lease expired or was not renewed)."""


def redis_client(config: RedisStreamConsumerConfig) -> aioredis.Redis:
    """A client for the first configured address ("host:port" or a redis:// URL)."""
    address = config.address[0]
    common: dict[str, Any] = {"socket_connect_timeout": config.connect_timeout,
                              "socket_timeout": config.io_timeout}
    if config.user:
        common["username"] = config.user
    if config.password:
        common["password"] = config.password
    if "://" in address:
        return aioredis.Redis.from_url(address, **common)
    host, _, port = address.rpartition(":")
    return aioredis.Redis(host=host, port=int(port), db=config.db, **common)


class RedisStreamConsumer:
    """Consumes the configured streams for one node (see the module docstring)."""

    def __init__(self, node: Node, name: str, config: RedisStreamConsumerConfig,
                 stats: ConsumerStats, token: str) -> None:
        self.node, self.name, self.config, self.stats = node, name, config, stats
        self.token = token  # this incarnation: lease value and consumer name in the group
        self.group = config.consumer_group
        self.ttl_ms = int(config.visibility_timeout * 1000)
        # A blocking read must end well before the socket timeout and the lease's renewal.
        self.block_ms = max(1, int(min(1.0, config.visibility_timeout / 3,
                                       config.io_timeout / 2) * 1000))
        self._client: aioredis.Redis | None = None

    async def run(self) -> None:
        """Consume until cancelled. Never returns; raises only on a bug."""
        self._client = redis_client(self.config)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._probe_lag())
                for stream in self.config.streams:
                    group.create_task(self._stream(stream))
        finally:
            await self._release_all()
            await self._client.aclose()

    def _owner_key(self, stream: str) -> str:
        return f"chorus:stream-owner:{self.group}:{stream}"

    async def _release_all(self) -> None:
        """Give the streams back at once on a stop (after a kill they expire)."""
        client = self._client
        assert client is not None
        for stream in list(self.stats.owned):
            try:
                await asyncio.wait_for(client.eval(RELEASE, 1, self._owner_key(stream),
                                                   self.token), 1.0)
            except (*TEMPORARY, asyncio.CancelledError):
                break  # unreleased leases expire after visibility_timeout
        self.stats.owned.clear()

    # -- one stream ----------------------------------------------------------------------
    async def _stream(self, stream: str) -> None:
        lease, backoff = Lease(self.config.visibility_timeout), Backoff()
        loop = asyncio.get_running_loop()
        reclaim = True  # pending entries first: after taking the stream and after a failure
        while True:
            try:
                if not lease.held or lease.renew_due(loop.time()):
                    if not await self._take(stream):
                        raise LeaseLost(stream)
                    if not lease.held:
                        reclaim = True
                    lease.acquired(loop.time())
                    self.stats.owned.add(stream)
                if self.node.draining:  # publishes are refused now; the stop is near
                    await asyncio.sleep(self.block_ms / 1000)
                    continue
                if reclaim:  # (re)make the group too: the stream may have been deleted
                    await self._ensure_group(stream)
                    await self._reclaim(stream, lease)
                    reclaim = False
                await self._read_new(stream, lease)
                backoff.reset()
            except LeaseLost:
                lease.lost()
                self.stats.owned.discard(stream)
                await asyncio.sleep(min(1.0, self.config.visibility_timeout / 3))
            except _Failed as failed:  # a publish failed: retry it (it is pending) first
                reclaim = True
                log.warning("consumer %s stream %s: publish failed (%r); retrying in order",
                            self.name, stream, failed.error)
                await asyncio.sleep(backoff.next())
            except TEMPORARY as error:
                reclaim = True
                if not lease.valid(loop.time()):
                    lease.lost()
                    self.stats.owned.discard(stream)
                self.stats.error(error)
                log.warning("consumer %s stream %s: %r; retrying", self.name, stream, error)
                await asyncio.sleep(backoff.next())

    async def _take(self, stream: str) -> bool:
        assert self._client is not None
        taken = await self._client.eval(TAKE_OR_RENEW, 1, self._owner_key(stream),
                                        self.token, self.ttl_ms)
        return bool(taken)

    async def _ensure_group(self, stream: str) -> None:
        """Create the group at the stream's start (entries added before the first start
        are consumed too) and the stream itself if absent; an existing group is kept."""
        assert self._client is not None
        try:
            await self._client.xgroup_create(stream, self.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _reclaim(self, stream: str, lease: Lease) -> None:
        """Claim and publish every pending entry of the group, oldest first."""
        assert self._client is not None
        start = "0-0"
        while True:
            reply = await self._client.xautoclaim(stream, self.group, self.token,
                                                  min_idle_time=0, start_id=start,
                                                  count=READ_COUNT)
            start = _text(reply[0])
            await self._handle(stream, reply[1], lease)
            if start == "0-0":
                return

    async def _read_new(self, stream: str, lease: Lease) -> None:
        assert self._client is not None
        try:
            reply = await self._client.xreadgroup(self.group, self.token, {stream: ">"},
                                                  count=READ_COUNT, block=self.block_ms)
        except ResponseError as error:
            if "NOGROUP" in str(error):  # the stream was deleted: make it again
                await self._ensure_group(stream)
                return
            raise
        replies: list[Any] = list(reply or [])  # [[stream, [(id, fields), ...]]]
        for _name, entries in replies:
            await self._handle(stream, entries, lease)

    async def _handle(self, stream: str, entries: list[Any], lease: Lease) -> None:
        """Publish ``entries`` in order, acknowledge the ones done; on a failed publish
        raise ``_Failed`` (the entry stays pending and is retried first)."""
        assert self._client is not None
        entries = [entry for entry in entries if entry is not None and entry[1] is not None]
        batch: Batch[Any] = Batch(entries, READ_COUNT)
        loop = asyncio.get_running_loop()
        try:
            while (entry := batch.next()) is not None:
                if lease.renew_due(loop.time()):
                    if not await self._take(stream):
                        raise LeaseLost(stream)
                    lease.acquired(loop.time())
                await self._publish(stream, entry, batch)
        finally:
            if batch.finished:
                await self._client.xack(stream, self.group, *[e[0] for e in batch.finished])
            batch.account(self.stats)
        if batch.failure is not None:
            raise _Failed(batch.failure)

    async def _publish(self, stream: str, entry: Any, batch: Batch[Any]) -> None:
        entry_id, fields = _text(entry[0]), entry[1]
        method = fields.get(self.config.method_value.encode())
        payload = fields.get(self.config.payload_value.encode())
        known = self.node.config.channel_options
        try:
            if method is None or payload is None:
                raise InvalidMessage(f"entry has no {self.config.method_value!r} or "
                                     f"{self.config.payload_value!r} field")
            command = decode(_text(method), payload, f"stream:{stream}:{entry_id}",
                             lambda channel: known(channel) is not None)
            redelivered = await dispatch(self.node, command)
        except InvalidMessage as error:
            log.warning("consumer %s: entry %s of %s dropped, it can never be published: %s",
                        self.name, entry_id, stream, error)
            batch.skip()
            return
        except Exception as error:  # engine down, node draining: retry from this entry
            batch.failed(error)
            return
        batch.done(redelivered)

    async def _probe_lag(self) -> None:
        """Entries not yet acknowledged by the group, over every stream, periodically."""
        assert self._client is not None
        while True:
            try:
                total = 0
                for stream in self.config.streams:
                    total += await self._stream_lag(stream)
                self.stats.probed(total)
            except TEMPORARY as error:
                log.debug("consumer %s: lag probe failed: %r", self.name, error)
            await asyncio.sleep(LAG_INTERVAL)

    async def _stream_lag(self, stream: str) -> int:
        assert self._client is not None
        try:
            groups = await self._client.xinfo_groups(stream)
        except ResponseError:  # no such stream yet
            return 0
        for group in groups:
            if _text(group.get("name", b"")) == self.group:
                lag = group.get("lag")
                return int(group.get("pending", 0)) + (int(lag) if lag is not None else 0)
        return 0


class _Failed(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
