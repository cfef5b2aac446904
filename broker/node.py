"""Node: what every actor of this process shares — config, engine, shards, connections.

The node is not an actor; it is the small, synchronous directory the actors consult
(which shard owns a channel, which connections a user has) plus the few coroutines that
actors run as effects (publish, history, recovery). It never holds a lock and never
blocks: everything runs on the event loop thread. Its connection bookkeeping (admission,
the connection and subscription directory, ping frames) is the ``NodeConnections`` mixin
of :mod:`broker.node_connections`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from actors import Runtime
from broker.auth import TokenVerifier
from broker.cache.layer import CacheLayer
from broker.cluster import NodeDirectory, control_message, user_command_message
from broker.config import ChannelOptions, Config
from broker.connection.framing import Delivery
from broker.connection.messages import _Expired
from broker.connection.pings import DeadlineWheel, PingWheel, RefreshWheel
from broker.connection.ticks import FlushScheduler
from broker.connection.writewatch import WriteWatch
from broker.consumers.state import ConsumerBoard
from broker.engine.base import (
    Engine,
    SuppressedPublish,
    UnconfirmedPublish,
    UnrecoverablePosition,
)
from broker.metrics import NodeMetrics
from broker.names import SHARDS_ID, shard_name
from broker.node_connections import NodeConnections
from broker.notify import NotificationStore, Notifier
from broker.proxy.hooks import Hook
from broker.proxy.registry import Proxies
from broker.shard.actor import Deliver, DeliverJoinLeave, Resync
from broker.survey import Surveys
from broker.transport.ratelimit import ConnectRateLimiter
from broker.types import ClientInfo, Publication, StreamPosition
from broker.wire import publication_dict

if TYPE_CHECKING:
    from broker.connection.actor import ConnectionActor
    from broker.journal.actor import JourneyBoard
    from broker.journal.feed import JournalFeed
    from broker.journal.store import JourneyStore

log = logging.getLogger("chorus.node")

RpcHandler = Callable[[dict[str, Any], bytes], Coroutine[Any, Any, Any]]
MessageHandler = Callable[[str, str, bytes], None]



def _any_presence(config: Config) -> bool:
    channel = config.channel
    return channel.without_namespace.presence or any(
        ns.options.presence for ns in channel.namespaces)


class NodeDraining(Exception):
    """The node is shutting down and takes no more publications."""


class Node(NodeConnections):
    def __init__(self, config: Config, runtime: Runtime, engine: Engine, name: str,
                 notifications: NotificationStore | None = None, *,
                 hooks: Mapping[str, Hook] | None = None) -> None:
        self.config = config
        self.runtime = runtime
        self.engine = engine
        self.name = name
        self.uid = str(uuid.uuid4())
        self.directory = NodeDirectory()
        self.surveys = Surveys(self)  # questions to every node (broker.survey)
        self.started_at = time.time()
        self.scheduler = FlushScheduler(runtime.loop, delay=config.client.write_delay,
                                        burst_delay=config.client.burst_write_delay)
        self.verifier = TokenVerifier(config.client.token, config.client.subscription_token)
        self.shard_count = config.chorus.shard_count
        # Whether other nodes exist behind the engine (not for the memory engine).
        self.remote = engine.name != "memory"
        self.shard_ids = [f"{SHARDS_ID}/{shard_name(i)}" for i in range(self.shard_count)]
        self.connections: dict[str, ConnectionActor] = {}
        self.users: dict[str, set[str]] = {}
        self.rpc_handlers: dict[str, RpcHandler] = {}
        self.message_handlers: list[MessageHandler] = []
        self.draining = False
        self.connect_limiter = ConnectRateLimiter(config.client.connect_rate_limit_per_ip)
        personal = config.client.subscribe_to_user_personal_channel
        # A user's new connection disconnects the older ones, on every node (3504).
        self.single_connection = personal.enabled and personal.single_connection
        self.publishing = 0  # publishes between their engine call and their fan-out
        self._settled = asyncio.Event()  # set whenever ``publishing`` is 0
        self._settled.set()
        self.loop_lag = 0.0
        self.deliveries = 0
        self.publications = 0
        self.slow_consumers = 0
        self.commands: Counter[str] = Counter()
        # Kept as subscriptions come and go, so monitors and ``info`` never walk every
        # connection.
        self.subscriptions = 0
        self.channel_subscribers: Counter[str] = Counter()
        # Channel compaction ids: one per channel while it has subscribers on this node
        # (so its compacting subscribers share one frame), never reused in a process.
        self.channel_ids: dict[str, int] = {}
        self._last_channel_id = 0
        self._started_shards: set[int] = set()
        self.pings: PingWheel | None = None  # see below
        self._ping_frames: dict[Delivery, tuple[bytes, bytes]] = {}
        # Emulation sessions of this node's connections: session id -> client id; and
        # how /emulation requests were routed ("local", "forwarded", "unknown_node").
        self.sessions: dict[str, str] = {}
        self.emulation_routes: Counter[str] = Counter()
        # Per-connection timer structures, node-wide data that connections join and
        # leave; their ticks are ConnectionTimersActor's timers (broker.connection.pings).
        if config.client.ping_interval > 0:
            self.pings = PingWheel(config.client.ping_interval, config.client.pong_timeout,
                                   self._no_pong)
        self.write_watch: WriteWatch | None = WriteWatch(config.websocket.write_timeout,
                                                         runtime.loop.time)
        self.presence_wheel: RefreshWheel[Any] | None = None
        if _any_presence(config):
            self.presence_wheel = RefreshWheel(config.client.presence_update_interval,
                                               lambda conn: conn.refresh_presence())
        # Sockets without a connect command yet: closed 3502 after stale_close_delay.
        # Not stopped by stop_pings: a draining node still closes stale sockets.
        self.stale_wheel = DeadlineWheel(
            config.client.stale_close_delay,
            lambda conn: runtime.tell(conn.ref, _Expired()))
        self._tasks: set[asyncio.Task[Any]] = set()
        self.consumers = ConsumerBoard(config.consumers)  # counters of the async consumers
        self.metrics = NodeMetrics(self)  # reads the counters above at scrape time
        # Proxies and @chorus.on_... hooks, resolved now: a conflict fails the start
        self.proxies = Proxies(config, hooks, self.metrics)
        # L1 over the engine, per shard (broker.cache); durable notifications (broker.notify)
        self.cache = CacheLayer(engine, config.cache, self.shard_count, self.shard_of,
                                lambda channel: self.tell_shard(channel, Resync(channel)),
                                options=self.options, shared=self.remote,
                                link=self._link_state)
        self.notifier = Notifier(self, notifications) if notifications is not None else None
        # Connection journeys (broker.journal): None when journeys.enabled is false.
        self.journal: JournalFeed | None = None
        self.journeys: JourneyBoard | None = None
        engine.set_handlers(self._remote_publication, self._remote_control,
                            self._remote_join, self._remote_leave, self._unrecoverable)

    def enable_journeys(self, store: JourneyStore) -> None:
        """Record connection journeys into ``store`` (before the tree starts)."""
        from broker.journal.actor import JourneyBoard
        from broker.journal.feed import JournalFeed
        from broker.names import JOURNAL_ID

        self.journeys = JourneyBoard.from_config(self.config.journeys, store)
        self.journal = JournalFeed(self.name, lambda batch: self.runtime.tell(JOURNAL_ID, batch),
                                   self.runtime.loop)

    # -- shards ---------------------------------------------------------------------------
    def shard_of(self, channel: str) -> int:
        return zlib.crc32(channel.encode()) % self.shard_count

    def tell_shard(self, channel: str, message: Any) -> None:
        self.runtime.tell(self.shard_ids[zlib.crc32(channel.encode()) % self.shard_count],
                          message)

    def shard_started(self, index: int) -> bool:
        """Record that shard ``index`` started; True if it ran before (a restart)."""
        restarted = index in self._started_shards
        self._started_shards.add(index)
        return restarted

    def _link_state(self) -> tuple[bool, int]:
        engine = self.engine
        return (bool(getattr(engine, "link_up", True)),
                int(getattr(engine, "link_generation", 0)))

    # -- publishing -------------------------------------------------------------------------
    def options(self, channel: str) -> ChannelOptions:
        return self.config.channel_options(channel) or self.config.channel.without_namespace

    async def publish(self, channel: str, data: bytes, *, info: ClientInfo | None = None,
                      tags: dict[str, str] | None = None,
                      idempotency_key: str | None = None,
                      skip_history: bool = False,
                      delta: bool = False) -> tuple[Publication, StreamPosition]:
        """Store (when the channel keeps history) and fan out; returns once stored.

        ``delta`` (or the namespace's ``delta_publish``) publishes with delta: fossil
        delta subscribers get a delta against the channel's previous publication.
        A repeated ``idempotency_key`` fans out nothing and returns the engine's
        ``SuppressedPublish`` (the earlier result), so a caller can tell a redelivery.

        Error handling: an engine failure raises before anything is delivered, so a
        publication is acknowledged only once the engine has it. A draining node raises
        ``NodeDraining`` (nothing stored): its clients are being told to leave, so it
        acknowledges nothing it could no longer deliver; publishes already past this
        check fan out before the clients are told (see ``settled``).
        """
        if self.draining:
            raise NodeDraining("node is shutting down; publish elsewhere")
        started = time.perf_counter()
        options = self.options(channel)
        delta = delta or options.delta_publish
        size = 0 if skip_history else options.history_size
        policy = self.cache.policy(options, channel) if size else "off"
        self.publishing += 1
        self._settled.clear()
        try:
            if policy == "write_behind" and idempotency_key is None:
                outcome = await self.cache.publish_behind(channel, data, options,
                                                          info=info, tags=tags, delta=delta)
            else:
                try:
                    outcome = await self.engine.publish(
                        channel, data, info=info, tags=tags, history_size=size,
                        history_ttl=options.history_ttl if size else 0.0,
                        idempotency_key=idempotency_key,
                        idempotent_ttl=300.0 if idempotency_key else 0.0, delta=delta)
                except UnconfirmedPublish as unconfirmed:
                    # Stored and sent to every other node, yet not acknowledged: this
                    # node's subscribers get it too (no node may be the one with a gap).
                    self._fan_out(channel, unconfirmed.result, options, policy, started)
                    raise
                if policy != "off":
                    self.cache.published(channel, outcome[0], outcome[1], options)
        finally:
            self.publishing -= 1
            if not self.publishing:
                self._settled.set()
        if isinstance(outcome, SuppressedPublish):  # a repeated idempotency key
            return outcome  # callers that care (consumers) tell a redelivery by its type
        pub, position = outcome
        self.publications += 1
        self.tell_shard(channel, Deliver(channel, pub))
        self.metrics.published(channel, started)
        return pub, position

    def _fan_out(self, channel: str, outcome: tuple[Publication, StreamPosition],
                 options: ChannelOptions, policy: str, started: float) -> None:
        """Deliver a publication the engine stored but did not acknowledge."""
        if isinstance(outcome, SuppressedPublish):
            return
        if policy != "off":
            self.cache.published(channel, outcome[0], outcome[1], options)
        self.publications += 1
        self.tell_shard(channel, Deliver(channel, outcome[0]))
        self.metrics.published(channel, started)

    async def settled(self, timeout: float) -> bool:
        """Wait until no publish is between its engine call and its fan-out; False if
        ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def join_leave(self, channel: str, info: ClientInfo, *, join: bool) -> None:
        self.tell_shard(channel, DeliverJoinLeave(channel, info, join))
        engine = self.engine
        self.spawn(engine.publish_join(channel, info) if join
                   else engine.publish_leave(channel, info))

    async def recover(self, channel: str, since: StreamPosition | None, limit: int,
                      options: ChannelOptions) -> tuple[list[Publication], StreamPosition, bool]:
        """Publications after ``since`` (at most ``limit``) and whether they close the gap.

        The node subscribes to the channel on the engine first, so nothing published by
        another node between the history read and the subscription can fall in between.
        Positions come from the channel's L1 only where it is authoritative (see
        CacheLayer.authoritative), else from the engine.
        """
        if self.remote:
            await self.engine.subscribe(channel)
        read = self.cache.history
        if since is None:
            _, top = await read(channel, options, limit=0)
            return [], top, False
        try:
            pubs, top = await read(channel, options, since=since, limit=limit + 1)
        except UnrecoverablePosition:
            _, top = await read(channel, options, limit=0)
            return [], top, False
        if len(pubs) > limit:
            return [], top, False
        return pubs, top, True

    async def history(self, channel: str, options: ChannelOptions, *, limit: int,
                      since: dict[str, Any] | None, reverse: bool) -> dict[str, Any]:
        cap = self.config.client.history_max_publication_limit
        if limit < 0 or limit > cap:
            limit = cap
        position = None
        if since is not None:
            position = StreamPosition(int(since.get("offset", 0)), str(since.get("epoch", "")))
        pubs, top = await self.cache.history(channel, options, since=position, limit=limit,
                                             reverse=reverse)
        return {"publications": [publication_dict(p) for p in pubs],
                "offset": top.offset, "epoch": top.epoch}

    # -- remote leg ---------------------------------------------------------------------------
    def _remote_publication(self, channel: str, pub: Publication,
                            position: StreamPosition | None) -> None:
        if position is not None and self.cache.enabled:
            self.cache.published(channel, pub, position, self.options(channel), remote=True)
        self.tell_shard(channel, Deliver(channel, pub))

    def _remote_join(self, channel: str, info: ClientInfo) -> None:
        self.tell_shard(channel, DeliverJoinLeave(channel, info, True))

    def _remote_leave(self, channel: str, info: ClientInfo) -> None:
        self.tell_shard(channel, DeliverJoinLeave(channel, info, False))

    def _unrecoverable(self, channel: str) -> None:
        """Publications were lost between nodes: subscribers re-sync (and learn it)."""
        log.warning("channel %s: missed publications are unrecoverable; subscribers resync",
                    channel)
        self.cache.invalidate(channel)
        self.tell_shard(channel, Resync(channel))

    def _remote_control(self, data: bytes) -> None:
        control_message(self, data)

    # -- user commands, on every node ------------------------------------------------------
    def user_command(self, op: str, user: str, *, client: str = "", channel: str = "",
                     code: int = 0, reason: str = "", **fields: Any) -> None:
        """Disconnect / subscribe / unsubscribe / refresh ``user`` (or one ``client``) on
        this node now and on every other node through the engine (at most once there);
        ``fields``: the op's own (JSON values)."""
        message: dict[str, Any] = {"op": op, "user": user, "client": client,
                                   "channel": channel, "code": code, "reason": reason,
                                   **fields}
        user_command_message(self, message)
        self.spawn(self.engine.publish_control(orjson.dumps(message)))

    # -- bookkeeping ------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a fire-and-forget coroutine; its failure is logged, never lost silently."""
        task = self.runtime.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task failed: %r", task.exception())

    async def drain_tasks(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def metrics_delivered(self, count: int, channel: str | None = None) -> None:
        self.deliveries += count
        if channel is not None:  # per namespace: one dict update per publication
            self.metrics.delivered(channel, count)

    def count_command(self, method: str) -> None:
        self.commands[method] += 1

    def count_slow_consumer(self) -> None:
        self.slow_consumers += 1

    def info(self) -> dict[str, Any]:
        """This node and every node heard from recently (Centrifugo's ``info``)."""
        return {"nodes": [self.local_info(), *self.directory.alive(time.time())]}

    def local_info(self) -> dict[str, Any]:
        return {"uid": self.uid, "name": self.name, "version": "chorus",
                "num_clients": len(self.connections), "num_users": len(self.users),
                "num_subs": self.subscriptions, "num_channels": len(self.channel_subscribers),
                "uptime": int(time.time() - self.started_at)}
