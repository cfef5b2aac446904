"""Redis topologies: where a channel's commands go and where its pub/sub is read.

Four shapes, one small interface (``Topology``):

- ``Standalone``: one server.
- ``Sentinel``: a primary found through Sentinel; the command client (redis-py's
  sentinel pool) and the pub/sub reader both look the primary up again on every
  (re)connect, so a failover is followed automatically.
- ``Sharded``: several standalone servers; a channel lives on the server picked by a
  jump consistent hash of its name (adding a server moves only 1/n of the channels).
- ``Cluster``: a Redis Cluster; commands route by slot (redis-py), pub/sub is sharded
  (SPUBLISH/SSUBSCRIBE) and read from the primary owning the channel's slot.

A *route* is the id of one pub/sub reader: every channel with the same route is read
over one connection. ``open_pubsub(route)`` opens a fresh raw connection for it (no
redis-py auto-reconnect: the reader owns reconnects, so it knows about every cut).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel as SentinelClient
from redis.backoff import NoBackoff

from broker.engine.redis_codec import jump_hash

if TYPE_CHECKING:
    from broker.config import Config

__all__ = [
    "Address",
    "Cluster",
    "Sentinel",
    "Sharded",
    "Standalone",
    "Topology",
    "parse_address",
]


@dataclass(frozen=True, slots=True)
class Address:
    """Where and how to connect to one Redis server."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str, *, db: int = 0, user: str = "", password: str = "") -> Address:
    """``host:port`` or a ``redis://[user:password@]host:port[/db]`` URL.

    Credentials and db in a URL win over the arguments (which come from config).
    Error handling: raises ValueError for an address without a port or a bad URL.
    """
    if "://" in text:
        kwargs: dict[str, Any] = dict(parse_url(text))
        return Address(
            str(kwargs.get("host", "127.0.0.1")),
            int(kwargs.get("port", 6379)),
            int(kwargs.get("db", db)),
            kwargs.get("username") or user or None,
            kwargs.get("password") or password or None,
        )
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"redis address {text!r} is not host:port or a redis:// URL")
    return Address(host or "127.0.0.1", int(port), db, user or None, password or None)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 1.0
    io: float = 4.0


def raw_connection(address: Address, timeouts: Timeouts) -> Connection:
    """A connection without retries or read timeout, for one pub/sub reader.

    RESP2: messages arrive as plain arrays. Under RESP3 (redis-py 8's default) each is a
    push notification, which redis-py hands to a handler that formats the whole message
    into a debug log line whether or not debug logging is on — for every publication.
    """
    return Connection(
        protocol=2,
        host=address.host,
        port=address.port,
        db=address.db,
        username=address.username,
        password=address.password,
        socket_connect_timeout=timeouts.connect,
        socket_timeout=None,  # a subscriber may be idle for hours; liveness is our PING
        retry=Retry(NoBackoff(), 0),
    )


def command_client(address: Address, timeouts: Timeouts) -> Redis:
    return Redis(
        host=address.host,
        port=address.port,
        db=address.db,
        username=address.username,
        password=address.password,
        socket_connect_timeout=timeouts.connect,
        socket_timeout=timeouts.io,
        retry=Retry(NoBackoff(), 1),  # one immediate retry on a fresh connection
    )


class Topology(Protocol):
    """How the engine reaches Redis; see the module docstring."""

    kind: str
    sharded_pubsub: bool  # True: SPUBLISH/SSUBSCRIBE (Cluster); False: PUBLISH/SUBSCRIBE

    def client(self, channel: str) -> Any:
        """The command client for the keys of ``channel`` (Redis or RedisCluster)."""

    def clients(self) -> list[Any]:
        """Every command client (one per server; one RedisCluster for a Cluster)."""

    def route(self, channel: str) -> str:
        """The reader id serving ``channel``; the control channel routes as its name."""

    async def open_pubsub(self, route: str) -> Connection:
        """A new, connected raw connection for the reader ``route``.

        Error handling: raises redis ConnectionError/TimeoutError/OSError if unreachable.
        """

    async def refresh(self) -> None:
        """Re-learn the topology after a failure (Cluster: slots); may be a no-op."""

    async def close(self) -> None:
        """Close every command client."""


class Standalone:
    kind = "standalone"
    sharded_pubsub = False

    def __init__(self, address: Address, timeouts: Timeouts = Timeouts()) -> None:
        self.address, self.timeouts = address, timeouts
        self._client = command_client(address, timeouts)

    def client(self, channel: str) -> Any:
        return self._client

    def clients(self) -> list[Any]:
        return [self._client]

    def route(self, channel: str) -> str:
        return self.address.name

    async def open_pubsub(self, route: str) -> Connection:
        conn = raw_connection(self.address, self.timeouts)
        await conn.connect()
        return conn

    async def refresh(self) -> None:
        pass

    async def close(self) -> None:
        await self._client.aclose()


class Sharded:
    """Client-side sharding over standalone servers by jump hash of the channel name."""

    kind = "sharded"
    sharded_pubsub = False

    def __init__(self, addresses: list[Address], timeouts: Timeouts = Timeouts()) -> None:
        if not addresses:
            raise ValueError("sharded topology needs at least one address")
        self.shards = [Standalone(address, timeouts) for address in addresses]
        self._by_name = {shard.address.name: shard for shard in self.shards}

    def _shard(self, channel: str) -> Standalone:
        # crc32 is stable across processes (hash() is salted per process).
        return self.shards[jump_hash(zlib.crc32(channel.encode()), len(self.shards))]

    def client(self, channel: str) -> Any:
        return self._shard(channel).client(channel)

    def clients(self) -> list[Any]:
        return [shard.client("") for shard in self.shards]

    def route(self, channel: str) -> str:
        return self._shard(channel).address.name

    async def open_pubsub(self, route: str) -> Connection:
        return await self._by_name[route].open_pubsub(route)

    async def refresh(self) -> None:
        pass

    async def close(self) -> None:
        for shard in self.shards:
            await shard.close()


class Sentinel:
    """A primary known by its service name; every reconnect asks the sentinels again."""

    kind = "sentinel"
    sharded_pubsub = False

    def __init__(
        self,
        sentinels: list[Address],
        service: str,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        sentinel_password: str | None = None,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        if not sentinels or not service:
            raise ValueError("sentinel topology needs sentinel addresses and a master name")
        self.service, self.timeouts = service, timeouts
        self._auth = Address("", 0, db, username, password)
        sentinel_kwargs = {"socket_connect_timeout": timeouts.connect,
                           "socket_timeout": timeouts.io}
        if sentinel_password:
            sentinel_kwargs["password"] = sentinel_password  # type: ignore[assignment]
        self._sentinel = SentinelClient(
            [(a.host, a.port) for a in sentinels],
            sentinel_kwargs=sentinel_kwargs,
            db=db,
            username=username,
            password=password,
            socket_connect_timeout=timeouts.connect,
            socket_timeout=timeouts.io,
        )
        self._client = self._sentinel.master_for(
            service, retry=Retry(NoBackoff(), 1), check_connection=False
        )

    def client(self, channel: str) -> Any:
        return self._client

    def clients(self) -> list[Any]:
        return [self._client]

    def route(self, channel: str) -> str:
        return f"sentinel:{self.service}"

    async def primary(self) -> Address:
        """The current primary, as the sentinels see it now."""
        host, port = await self._sentinel.discover_master(self.service)
        auth = self._auth
        return Address(host, int(port), auth.db, auth.username, auth.password)

    async def open_pubsub(self, route: str) -> Connection:
        conn = raw_connection(await self.primary(), self.timeouts)
        await conn.connect()
        return conn

    async def refresh(self) -> None:
        pass

    async def close(self) -> None:
        await self._client.aclose()
        for sentinel in self._sentinel.sentinels:
            await sentinel.aclose()


class Cluster:
    """Redis Cluster: commands by slot via RedisCluster, sharded pub/sub per primary."""

    kind = "cluster"
    sharded_pubsub = True

    def __init__(
        self,
        seeds: list[Address],
        *,
        username: str | None = None,
        password: str | None = None,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        if not seeds:
            raise ValueError("cluster topology needs at least one seed address")
        self.timeouts = timeouts
        self._auth = Address("", 0, 0, username, password)
        self._client = RedisCluster(
            startup_nodes=[ClusterNode(a.host, a.port) for a in seeds],
            username=username,
            password=password,
            socket_connect_timeout=timeouts.connect,
            socket_timeout=timeouts.io,
        )

    def client(self, channel: str) -> Any:
        return self._client

    def clients(self) -> list[Any]:
        return [self._client]

    def route(self, channel: str) -> str:
        """The primary owning the slot of ``{channel}`` (all of its keys share it)."""
        node = self._client.get_node_from_key(f"{{{channel}}}")
        if node is None:
            raise ConnectionError(f"no cluster node owns the slot of {channel!r}")
        return str(node.name)

    async def open_pubsub(self, route: str) -> Connection:
        host, _, port = route.rpartition(":")
        auth = self._auth
        conn = raw_connection(Address(host, int(port), 0, auth.username, auth.password),
                              self.timeouts)
        await conn.connect()
        return conn

    async def initialize(self) -> None:
        await self._client.initialize()

    async def refresh(self) -> None:
        await self._client.nodes_manager.initialize()

    async def close(self) -> None:
        await self._client.aclose()


def topology_from_config(config: Config) -> Topology:
    """Cluster if ``cluster_address``, else Sentinel if ``sentinel_address``, else
    standalone (one address) or client-side sharding (several)."""
    rc = config.engine.redis
    timeouts = Timeouts(rc.connect_timeout, rc.io_timeout)
    user, password = rc.user or None, rc.password or None
    if rc.cluster_address:
        seeds = [parse_address(a) for a in rc.cluster_address]
        return Cluster(seeds, username=user, password=password, timeouts=timeouts)
    if rc.sentinel_address:
        return Sentinel(
            [parse_address(a) for a in rc.sentinel_address], rc.sentinel_master_name,
            db=rc.db, username=user, password=password,
            sentinel_password=rc.sentinel_password or None, timeouts=timeouts,
        )
    addresses = [parse_address(a, db=rc.db, user=rc.user, password=rc.password)
                 for a in rc.address]
    if len(addresses) == 1:
        return Standalone(addresses[0], timeouts)
    return Sharded(addresses, timeouts)
