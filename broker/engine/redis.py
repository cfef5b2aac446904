"""RedisEngine: nodes joined through Redis — pub/sub, history streams, presence.

Publishing runs one Lua script (redis_scripts.PUBLISH) that appends to the channel's
stream and publishes to the channel's pub/sub channel atomically, with dense offsets
and an epoch kept in a meta hash. History offsets are the stream IDs (``<offset>-0``).
Receiving and reconnects live in redis_receive, catch-up in redis_positions; topologies (standalone,
Sentinel, Cluster with sharded pub/sub, client-side sharding) in redis_link; the
formats in redis_codec; history reads, presence and occupancy in redis_stores. See
broker.engine.base for each method's guarantee.

Every node has a random ``node_id`` (not the node name: several worker processes of
one host share a name); messages carry it so a node drops its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError, RedisError

from broker.engine.base import (
    ControlHandler,
    EngineError,
    JoinLeaveHandler,
    PublicationHandler,
    SuppressedPublish,
    UnconfirmedPublish,
)
from broker.engine.redis_batch import Batcher, ReplicasMissing, Wait
from broker.engine.redis_codec import (
    KeyScheme,
    encode_body,
    encode_control,
    publication_of,
)
from broker.engine.redis_doubt import DoubtResolver, verifier
from broker.engine.redis_link import (
    Cluster,
    Sharded,
    Standalone,
    Timeouts,
    Topology,
    parse_address,
    topology_from_config,
)
from broker.engine.redis_pubsub import Backoff
from broker.engine.redis_receive import Receiver, UnrecoverableHandler
from broker.engine.redis_scripts import (
    PUBLISH,
    SCRIPTS,
    Script,
)
from broker.engine.redis_stores import RedisStores, ms
from broker.engine.state import new_epoch
from broker.types import ClientInfo, Publication, StreamPosition

if TYPE_CHECKING:
    from broker.config import Config
    from broker.engine.base import Engine

__all__ = ["RedisEngine", "RedisEngineStats", "topology_from_config"]

DEFAULT_HISTORY_META_TTL = 30 * 24 * 3600.0  # Centrifugo's history_meta_ttl default (720h)
DEFAULT_IDEMPOTENT_TTL = 300.0  # centrifuge's default idempotent result TTL
_NO_POSITION = StreamPosition(0, "")


@dataclass(frozen=True, slots=True)
class RedisEngineStats:
    """A snapshot for health checks, metrics and the admin page."""

    topology: str
    link_up: bool
    reconnects: int
    last_error: str
    ping_rtt: float | None  # seconds, the slowest reader's last PING round trip
    subscribed_channels: int
    delivered: int
    caught_up: int
    unrecoverable: int
    in_doubt: int  # channels with publications not known to survive a failover
    diverged: int  # epochs this node moved after its stream diverged on a new primary


class RedisEngine(RedisStores):
    """Engine over Redis; see the module docstring and broker.engine.base.

    ``address``: one address (``host:port`` or ``redis://`` URL) for a standalone
    server, several for client-side sharding; ``topology`` overrides it (Sentinel,
    Cluster). ``ping_interval`` paces the liveness PING on every pub/sub connection;
    a missing PONG after ``io_timeout`` forces a reconnect.
    """

    name = "redis"

    def __init__(
        self,
        address: str | Sequence[str] = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "chorus",
        topology: Topology | None = None,
        history_meta_ttl: float = DEFAULT_HISTORY_META_TTL,
        node_id: str | None = None,
        io_timeout: float = 4.0,
        ping_interval: float = 1.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 5.0,
        replica_acks: int = 0,
        replica_ack_timeout: float = 1.0,
    ) -> None:
        if history_meta_ttl <= 0:
            raise ValueError(f"history_meta_ttl must be > 0, got {history_meta_ttl}")
        if topology is None:
            addresses = [address] if isinstance(address, str) else list(address)
            parsed = [parse_address(a) for a in addresses]
            timeouts = Timeouts(io=io_timeout)
            topology = Standalone(parsed[0], timeouts) if len(parsed) == 1 else Sharded(
                parsed, timeouts)
        self.topology = topology
        self.keys = KeyScheme(prefix)
        self.node_id = node_id or uuid.uuid4().hex
        self._meta_ttl = history_meta_ttl
        self._io_timeout, self._ping_interval = io_timeout, ping_interval
        self._publish_cmd = "spublish" if topology.sharded_pubsub else "publish"
        # Auto-pipelining (broker.engine.redis_batch); a Cluster routes every key itself.
        # Every lane connection loads the scripts first, so a restarted or failed-over
        # server never answers a publish with NOSCRIPT.
        self._batcher = None if isinstance(topology, Cluster) else Batcher(
            [("SCRIPT", "LOAD", script.source) for script in SCRIPTS])
        if replica_acks and self._batcher is None:
            raise ValueError("replica_acks needs a standalone or Sentinel topology (WAIT "
                             "must follow the write on its connection; Cluster routes keys)")
        # (replicas, timeout ms) for the WAIT after each publish with history, or None.
        self._wait = ((replica_acks, max(1, ms(replica_ack_timeout)))
                      if replica_acks else None)
        self.receiver = Receiver(
            topology, self.keys, self.node_id, self._catch_up_read, io_timeout=io_timeout,
            backoff=lambda: Backoff(backoff_base, backoff_cap),
        )
        # Unconfirmed publications (and streams that went back), verified in run_link.
        self.doubts = DoubtResolver(
            verifier(self._run, self.keys, self._publish_cmd, self._wait),
            Backoff(backoff_base, min(backoff_cap, 1.0)))
        self.receiver.went_back = self.doubts.went_back
        self._started = False
        self._closed = False

    @classmethod
    def from_config(cls, config: Config) -> RedisEngine:
        """The engine ``config.engine.redis`` describes (see topology_from_config)."""
        rc = config.engine.redis
        return cls(
            prefix=rc.prefix, topology=topology_from_config(config),
            history_meta_ttl=config.channel.history_meta_ttl, io_timeout=rc.io_timeout,
            replica_acks=rc.replica_acks, replica_ack_timeout=rc.replica_ack_timeout,
        )

    # -- lifecycle -----------------------------------------------------------------------

    def set_handlers(
        self,
        on_publication: PublicationHandler,
        on_control: ControlHandler,
        on_join: JoinLeaveHandler | None = None,
        on_leave: JoinLeaveHandler | None = None,
        on_unrecoverable: UnrecoverableHandler | None = None,
    ) -> None:
        """Handlers for other nodes' messages. ``on_unrecoverable(channel)`` (optional,
        Redis only) is called when publications missed during a cut cannot be caught up."""
        handlers = self.receiver.handlers
        handlers.publication, handlers.control = on_publication, on_control
        if on_join is not None:
            handlers.join = on_join
        if on_leave is not None:
            handlers.leave = on_leave
        if on_unrecoverable is not None:
            handlers.unrecoverable = on_unrecoverable

    async def start(self) -> None:
        """Connect and subscribe to control messages (so a node fails fast at start
        when Redis is unreachable). The readers then belong to ``run_link``'s caller.

        Error handling: raises EngineError if Redis is unreachable within the I/O
        timeout, or if the engine was closed.
        """
        self._check_open()
        if self._started:
            return
        try:
            if isinstance(self.topology, Cluster):
                await self.topology.initialize()
            await self.receiver.start()
            if self._batcher is not None:  # publish lanes up, scripts loaded
                for client in self.topology.clients():
                    await self._batcher.lane(client).open()
        except (RedisError, OSError, TimeoutError) as exc:
            await self.close()
            raise EngineError(f"redis engine could not start: {exc}") from exc
        self._started = True

    async def run_link(self) -> None:
        """The pub/sub readers with their reconnect loops, the liveness PING and the
        verification of publications in doubt (broker.engine.redis_doubt), for as long
        as this runs (see Broker.run_link). Suspended readers keep their channels and
        positions, so a resumed link re-subscribes and catches up from the streams;
        doubts are kept too, and verified again by the next owner.

        Error handling: EngineError when a reader ends by itself; cancellation stops
        the readers (this engine's link is then down until the next call)."""
        self._check_open()
        await self.receiver.resume()  # after a previous owner's readers have stopped
        loop = asyncio.get_running_loop()
        helpers = [loop.create_task(self._ping_forever()), loop.create_task(self.doubts.run())]
        try:
            await self.receiver.wait_failed()
        finally:
            for task in helpers:
                task.cancel()
            if not self._closed:
                # Before any other await: a next owner's resume must find the suspension.
                await self.receiver.suspend()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def close(self) -> None:
        """Stop readers and the PING, close clients; idempotent. Later calls raise."""
        if self._closed:
            return
        self._closed = True
        await self.receiver.close()
        if self._batcher is not None:
            await self._batcher.close()
        with contextlib.suppress(Exception):
            await self.topology.close()

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ping_interval)
            for reader in list(self.receiver.readers.values()):
                await reader.ping(self._io_timeout)

    @property
    def link_up(self) -> bool:
        """True while every pub/sub connection is up (for readiness checks)."""
        readers = self.receiver.readers.values()
        return not self._closed and bool(readers) and all(r.up for r in readers)

    @property
    def link_generation(self) -> int:
        """Changes whenever a pub/sub connection was re-made: what this node heard of
        other nodes' publications before may have a gap (the node's L1 re-reads)."""
        return sum(r.reconnects for r in self.receiver.readers.values())

    def statistics(self) -> RedisEngineStats:
        readers = list(self.receiver.readers.values())
        rtts = [r.rtt for r in readers if r.rtt is not None]
        errors = [r.last_error for r in readers if r.last_error]
        stats = self.receiver.stats
        return RedisEngineStats(
            self.topology.kind, self.link_up, sum(r.reconnects for r in readers),
            errors[-1] if errors else "", max(rtts) if rtts else None,
            len(self.receiver.channels), stats.delivered, stats.caught_up, stats.unrecoverable,
            len(self.doubts.doubts), self.doubts.diverged,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("redis engine is closed")

    async def _run(self, channel: str, script: Script, keys: list[str], args: list[Any],
                   *, wait: Wait | None = None, ordered: bool = False) -> Any:
        """Run a script on the channel's server; with ``wait``, a WAIT for that many
        replicas follows it on its connection. ``ordered``: in
        the client's lane (see broker.engine.redis_batch). Error handling: Redis/socket
        failures become EngineError (the effect is unknown); too few replicas:
        ReplicasMissing."""
        self._check_open()
        client = self.topology.client(channel)
        batcher = self._batcher
        try:
            if batcher is None:
                return await script(client, keys, args)

            def send() -> Any:
                if ordered:
                    return batcher.lane(client).submit(
                        ("EVALSHA", script.sha, len(keys), *keys, *args), wait)
                return batcher.submit(client, lambda pipe: pipe.evalsha(
                    script.sha, len(keys), *keys, *args), wait=wait)

            try:
                return await send()
            except NoScriptError:  # SCRIPT FLUSH, or a server that lost its cache
                await client.script_load(script.source)
                # The same way again, so back in its lane: a retry sent unordered could
                # come back before a later offset's and fan out after it (a parallel
                # batch's first publishes on a fresh server did:
                # tests/functional/test_http_api.py).
                return await send()
        except (RedisError, OSError, TimeoutError) as exc:
            raise EngineError(f"redis: {type(exc).__name__}: {exc}") from exc

    async def _command(self, channel: str, method: str, *args: Any,
                       ordered: bool = False) -> Any:
        self._check_open()
        client = self.topology.client(channel)
        batcher = self._batcher
        try:
            if batcher is None:
                return await getattr(client, method)(*args)
            if ordered:
                return await batcher.lane(client).submit((method, *args))
            return await batcher.submit(client, lambda pipe: getattr(pipe, method)(*args))
        except (RedisError, OSError, TimeoutError) as exc:
            raise EngineError(f"redis: {type(exc).__name__}: {exc}") from exc

    # -- broker --------------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: bytes,
        *,
        info: ClientInfo | None = None,
        tags: Mapping[str, str] | None = None,
        history_size: int = 0,
        history_ttl: float = 0.0,
        idempotency_key: str | None = None,
        idempotent_ttl: float = 0.0,
        delta: bool = False,
    ) -> tuple[Publication, StreamPosition]:
        """See Broker.publish (raises EngineError on a Redis failure or once closed)."""
        time_ms = int(time.time() * 1000)
        body = encode_body(self.node_id, time_ms, data, info, dict(tags) if tags else None,
                           delta)
        keys = self.keys
        history = history_size > 0 and history_ttl > 0
        if not history and idempotency_key is None:
            await self._command(channel, self._publish_cmd, keys.pubsub(channel), b"p0::" + body,
                                ordered=True)
            pub = Publication(data, 0, info, dict(tags) if tags else None, time_ms, delta)
            return pub, _NO_POSITION
        meta = keys.meta(channel)
        idem = keys.idempotency(channel, idempotency_key) if idempotency_key else meta
        idem_ttl = idempotent_ttl if idempotent_ttl > 0 else DEFAULT_IDEMPOTENT_TTL
        args = [
            body, history_size if history else 0, ms(history_ttl), ms(self._meta_ttl),
            new_epoch(), keys.pubsub(channel), ms(idem_ttl) if idempotency_key else 0,
            self._publish_cmd,
        ]
        stored = [keys.stream(channel), meta, idem]
        try:
            suppressed, msg = await self._run(channel, PUBLISH, stored, args, wait=self._wait,
                                              ordered=True)
        except ReplicasMissing as missing:
            suppressed, msg = missing.result
            if not suppressed:  # a failover may still lose it and reuse its offset
                self.doubts.unconfirmed(channel, msg)
            raise UnconfirmedPublish(await self._published(channel, msg, suppressed),
                                     missing.confirmed, missing.required) from None
        return await self._published(channel, msg, suppressed)

    async def _published(self, channel: str, msg: bytes, suppressed: int,
                         ) -> tuple[Publication, StreamPosition]:
        pub, position, _ = publication_of(msg)
        result = (pub, position or _NO_POSITION)
        if suppressed:  # the earlier publication: nothing new to fan out
            return SuppressedPublish(result)
        if position is not None:  # what precedes it reaches the handlers before its fan-out
            await self.receiver.own_publication(channel, position)
        return result

    async def _join_leave(self, kind: bytes, channel: str, info: ClientInfo) -> None:
        body = encode_body(self.node_id, 0, b"", info, None)
        await self._command(channel, self._publish_cmd, self.keys.pubsub(channel), kind + body)

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._join_leave(b"j", channel, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._join_leave(b"l", channel, info)

    async def publish_control(self, data: bytes) -> None:
        name = self.keys.control
        await self._command(name, self._publish_cmd, name, encode_control(self.node_id, data))

    async def subscribe(self, channel: str) -> None:
        """See Broker.subscribe; returns once Redis confirmed it and the baseline is read.

        Error handling: raises EngineError if that does not happen within the I/O
        timeout (the link is down); the subscription is then not kept.
        """
        self._check_open()
        try:
            await self.receiver.subscribe(channel)
        except (RedisError, OSError, TimeoutError) as exc:
            raise EngineError(f"redis subscribe {channel!r} failed: {exc!r}") from exc

    async def unsubscribe(self, channel: str) -> None:
        self._check_open()
        await self.receiver.unsubscribe(channel)



if TYPE_CHECKING:
    _conforms: type[Engine] = RedisEngine
