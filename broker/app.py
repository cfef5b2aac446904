"""The aiohttp application: standalone (``chorus serve``) or mounted in your own app.

```python
from aiohttp import web
from broker import Chorus, load_config

chorus = Chorus(load_config("chorus.yaml"))

@chorus.rpc("echo")
async def echo(ctx, data: bytes) -> bytes:
    return data

app = web.Application()
app.add_subapp("/realtime", chorus.create_app())   # or web.run_app(chorus.create_app())
```
The node (actor tree, engine, shards) lives in the app's ``cleanup_ctx``: it starts with
the app and, on shutdown, drains — clients are told to reconnect elsewhere (3001
shutdown), outboxes flush, the tree stops in reverse order, then the engine closes.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import resource
import signal
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from actors import Runtime
from actors.messages import ChildExited, ChildFailed
from broker import codecache
from broker.config import Config, load_config
from broker.config.checks import config_warnings
from broker.connection.actor import Disconnect
from broker.engine.base import Engine
from broker.journal.store import JourneyStore
from broker.metrics import install_metrics
from broker.monitor.health import readiness
from broker.names import connection_id
from broker.node import Node
from broker.notify import NotificationStore
from broker.protocol import codes
from broker.proxy.hooks import Hook
from broker.transport.http_api import api_handler
from broker.transport.keys import NODE, ChorusState
from broker.transport.routes import install_transports
from broker.tree import node_tree

log = logging.getLogger("chorus")

RpcFunction = Callable[[dict[str, Any], bytes], Coroutine[Any, Any, Any]]
FatalHandler = Callable[[BaseException], None]

EXIT_TREE_FAILED = 70  # EX_SOFTWARE: the root supervisor gave up; replace this process


def make_engine(config: Config) -> Engine:
    if config.engine.type == "redis":
        # Imported on demand: a memory-engine node never loads the Redis client.
        redis_engine = importlib.import_module("broker.engine.redis")
        engine: Engine = redis_engine.RedisEngine.from_config(config)
        return engine
    from broker.engine.memory import MemoryEngine

    return MemoryEngine(history_meta_ttl=config.channel.history_meta_ttl)


def make_notification_store(config: Config, engine: Engine) -> NotificationStore | None:
    """The engine's twin store for durable notifications (None when disabled)."""
    nc = config.notifications
    if not nc.enabled:
        return None
    if config.engine.type == "redis":
        from broker.engine.notify_redis import RedisNotificationStore, replica_client

        topology = engine.topology  # type: ignore[attr-defined]
        return RedisNotificationStore(
            topology.client, prefix=config.engine.redis.prefix,
            retention_count=nc.retention_count, retention_age=nc.retention_age,
            read_client=replica_client(config) if nc.read_from_replica else None)
    from broker.engine.notify_memory import MemoryNotificationStore

    return MemoryNotificationStore(retention_count=nc.retention_count,
                                   retention_age=nc.retention_age)


def make_journey_store(config: Config, engine: Engine) -> JourneyStore | None:
    """The engine's twin store for connection journeys (None when disabled)."""
    jc = config.journeys
    if not jc.enabled:
        return None
    if config.engine.type == "redis":
        from broker.journal.store_redis import RedisJourneyStore

        topology = engine.topology  # type: ignore[attr-defined]
        return RedisJourneyStore(topology.client, prefix=config.engine.redis.prefix,
                                 stream_maxlen=jc.stream_maxlen,
                                 all_maxlen=jc.all_stream_maxlen, stream_ttl=jc.stream_ttl)
    from broker.journal.store import MemoryJourneyStore

    return MemoryJourneyStore(jc.ring_size)


class Chorus:
    """A broker instance: register RPC and message handlers, then create its app."""

    def __init__(self, config: Config | None = None, *,
                 on_fatal: FatalHandler | None = None) -> None:
        """``on_fatal(error)`` is called if the root supervisor fails (its restart
        intensity was exceeded all the way up). By then every actor is gone and every
        client socket is closed with a reconnect code. The default asks the process to
        stop (SIGTERM to itself, so the surrounding server shuts down gracefully);
        ``chorus serve`` then exits with status 70 so that the ``--workers`` parent,
        systemd or Kubernetes starts a fresh process."""
        self.state = ChorusState(config if config is not None else load_config())
        self._on_fatal = on_fatal or _terminate_process

    @property
    def config(self) -> Config:
        return self.state.config

    @property
    def node(self) -> Node:
        """The running node (after the app started)."""
        return self.state.node

    def rpc(self, method: str) -> Callable[[RpcFunction], RpcFunction]:
        """Register ``async def handler(ctx, data: bytes) -> bytes`` for client RPC ``method``.

        ``ctx`` has the caller's ``user``, ``client`` and ``info``, and ``headers``: the
        emulated headers its SDK sent in the connect command (names lower-cased; client
        input, as trustworthy as the request body). The handler runs as an effect of the
        connection actor; an exception answers the client with error 100.
        """

        def register(handler: RpcFunction) -> RpcFunction:
            self.state.rpc_handlers[method] = handler
            return handler

        return register

    def on_connect(self, hook: Hook) -> Hook:
        """Authenticate connects without a token in-process, as the connect proxy would:
        ``async def hook(request: ConnectRequest) -> ConnectResult | None``. Needs
        ``client.proxy.connect.enabled: true`` with no endpoint (see broker.proxy.hooks for
        what a hook may return; broker.proxy.registry for the one-backend rule)."""
        return self._hook("connect", hook)

    def on_refresh(self, hook: Hook) -> Hook:
        """Renew connections at their ``expire_at``, as the refresh proxy would
        (``RefreshRequest`` -> ``RefreshResult``); needs ``client.proxy.refresh.enabled``."""
        return self._hook("refresh", hook)

    def on_subscribe(self, hook: Hook) -> Hook:
        """Decide subscribes in namespaces with ``subscribe_proxy_enabled``, as the
        subscribe proxy would (``SubscribeRequest`` -> ``SubscribeResult``)."""
        return self._hook("subscribe", hook)

    def on_publish(self, hook: Hook) -> Hook:
        """Decide (and may rewrite) client publications in namespaces with
        ``publish_proxy_enabled`` (``PublishRequest`` -> ``PublishResult``)."""
        return self._hook("publish", hook)

    def on_sub_refresh(self, hook: Hook) -> Hook:
        """Renew subscriptions at their ``expire_at`` in namespaces with
        ``sub_refresh_proxy_enabled`` (``SubRefreshRequest`` -> ``SubRefreshResult``)."""
        return self._hook("sub_refresh", hook)

    def _hook(self, event: str, hook: Hook) -> Hook:
        if event in self.state.hooks:
            raise ValueError(f"a hook for {event} is already registered")
        self.state.hooks[event] = hook
        return hook

    def on_message(self, handler: Callable[[str, str, bytes], None]) -> None:
        """Call ``handler(user, client, data)`` for every client ``send`` command."""
        self.state.message_handlers.append(handler)

    async def publish(self, channel: str, data: bytes) -> tuple[int, str]:
        """Publish from Python; returns (offset, epoch) once the engine has it."""
        _, position = await self.node.publish(channel, data)
        return position.offset, position.epoch

    def create_app(self) -> web.Application:
        limit = max(1 << 20, self.config.websocket.message_size_limit)
        app = web.Application(client_max_size=limit)
        app[NODE] = self.state
        app[FATAL] = self._on_fatal
        app.cleanup_ctx.append(_node_context)
        app.on_shutdown.append(_tell_clients)
        install_transports(app, self.config)
        app.router.add_post("/api/{method}", api_handler)
        app.router.add_get("/health", _health)
        app.router.add_get("/ready", _ready)
        install_metrics(app)
        if self.config.admin.enabled:  # the console's code loads only when it is on
            from broker.admin.routes import install_admin

            install_admin(app)
        return app


def _terminate_process(error: BaseException) -> None:
    """The default fatal handler: a graceful stop of the whole process (see Chorus)."""
    asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)


FATAL: web.AppKey[FatalHandler] = web.AppKey("chorus_fatal")


def create_app(config: Config | None = None) -> web.Application:
    """An aiohttp application serving Chorus with ``config`` (default: from the env)."""
    return Chorus(config).create_app()


async def _node_context(app: web.Application) -> AsyncIterator[None]:
    state = app[NODE]
    config = state.config
    for warning in config_warnings(config):
        log.warning("config: %s", warning)
    engine = make_engine(config)
    on_fatal = app[FATAL]

    def root_failed(event: ChildFailed | ChildExited) -> None:
        error = event.error if isinstance(event, ChildFailed) else RuntimeError(event.reason)
        log.critical("actor tree failed, this process must be replaced: %r", error)
        state.fatal = error
        on_fatal(error)

    runtime = Runtime(allow_crash=config.admin.allow_crash_actor, on_root_failure=root_failed)
    name = config.chorus.resolved_node_name
    store = make_notification_store(config, engine)
    node = Node(config, runtime, engine, name, store,  # sets the engine's handlers: first
                hooks=state.hooks)
    journeys = make_journey_store(config, engine)
    if journeys is not None:
        node.enable_journeys(journeys)
    await engine.start()
    node.rpc_handlers.update(state.rpc_handlers)
    node.message_handlers.extend(state.message_handlers)
    runtime.start(node_tree(node))
    state._node = node
    log.info("chorus node %s up: engine=%s shards=%d", name, engine.name, node.shard_count)
    try:
        yield
    finally:
        await _drain(node, _deadline(state))
        state._node = None
        await node.cache.flush_all()  # write-behind publications reach the engine
        await node.proxies.close()  # the proxies' HTTP client session
        if store is not None:
            await store.close()
        await engine.close()


async def _tell_clients(app: web.Application) -> None:
    """On shutdown, before aiohttp waits for open handlers (every WebSocket is one, and
    ``cleanup_ctx`` runs only after them): tell clients to reconnect elsewhere (3001)."""
    state = app[NODE]
    node = state._node
    if node is not None and not node.draining:
        await _drain(node, _deadline(state), stop_tree=False)


def _deadline(state: ChorusState) -> tuple[float, float]:
    """(timeout, loop time at which the drain must be over): ``chorus.shutdown_timeout``
    from the first phase's start, so both phases together stay within it."""
    timeout = state.config.chorus.shutdown_timeout
    if state.drain_deadline is None:
        state.drain_deadline = asyncio.get_running_loop().time() + timeout
    return timeout, state.drain_deadline


async def _drain(node: Node, deadline: tuple[float, float], stop_tree: bool = True) -> None:
    """Refuse new publishes, let those in flight fan out, tell every client to reconnect
    elsewhere (3001: each outbox is flushed before its close frame), stop the tree.

    So a publication acknowledged to its publisher (the publish call returned) was
    written to every live subscriber's socket before that subscriber's close frame.

    Time: the first phase (``stop_tree=False``, on_shutdown) takes at most half of
    ``chorus.shutdown_timeout``; ``chorus serve`` gives aiohttp an eighth to end the
    handlers (it may take twice that); the tree gets whatever is left (at least 0.1 s,
    then it is stopped by force), so the whole drain ends within the timeout.
    """
    timeout, end = deadline
    loop = asyncio.get_running_loop()

    def left(share: float) -> float:
        return max(0.0, min(timeout * share, end - loop.time()))

    node.draining = True
    node.stop_pings()
    await node.settled(left(1 / 8))
    count = len(node.connections)
    for client_id in list(node.connections):
        node.runtime.tell(connection_id(client_id), Disconnect(codes.DISCONNECT_SHUTDOWN))
    await node.drain_tasks(max(0.0, end - timeout / 2 - loop.time()))
    if not stop_tree:
        log.info("chorus draining: %d connections told to reconnect", count)
        return
    graceful = await node.runtime.shutdown(max(0.1, end - loop.time()))
    log.info("chorus drained: %d connections told to reconnect; tree stopped %s", count,
             "in order" if graceful else "by force after the deadline")


async def drain_clients(node: Node, timeout: float) -> int:
    """An operator's drain ahead of a restart (``POST /admin/api/drain``): the first phase
    of the SIGTERM drain — ``/ready`` turns 503 and stays so, new clients and publishes
    are refused, every client is told 3001 to reconnect elsewhere (each outbox flushed
    before its close frame). The process keeps running until it is stopped; its SIGTERM
    drain then has its own full ``chorus.shutdown_timeout``. Returns the clients told.

    Idempotent: a node already draining tells its remaining clients again."""
    count = len(node.connections)
    loop = asyncio.get_running_loop()
    await _drain(node, (timeout, loop.time() + timeout), stop_tree=False)
    return count


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _ready(request: web.Request) -> web.Response:
    report = readiness(request.app[NODE]._node)
    return web.json_response(report, status=200 if report["ready"] else 503)


def run_server(config: Config, *, reuse_port: bool = False,
               on_serving: Callable[[], None] | None = None) -> int:
    """Serve Chorus on uvloop until SIGINT/SIGTERM, then drain gracefully; returns the
    process exit status: 0, or ``EXIT_TREE_FAILED`` if the actor tree failed.

    ``reuse_port``: share the port with sibling worker processes (SO_REUSEPORT).
    ``on_serving``: called once the node runs and the socket listens (``chorus serve``
    resumes the garbage collector there).
    """
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep working without
        log.warning("uvloop not available; using the default asyncio loop")
    raise_open_file_limit()
    ssl_context = None
    tls = config.http_server.tls
    if tls.enabled:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(tls.cert_pem_file, tls.key_pem_file)
    chorus = Chorus(config)
    app = chorus.create_app()
    codecache.save()  # every class the server needs exists now; the next start skips compiling
    # aiohttp's run_app, with WebSocket upgrades answered before aiohttp's request
    # machinery (broker.serving, broker.transport.fastws).
    from broker.serving import serve_app

    serve_app(app, host=config.http_server.address or None,
              port=config.http_server.port, ssl_context=ssl_context, access_log=None,
              reuse_port=reuse_port, backlog=4096,  # the kernel caps it at somaxconn
              # aiohttp waits up to twice this for handlers (graceful, then cancelled),
              # between the two phases of the drain; see _drain.
              shutdown_timeout=config.chorus.shutdown_timeout / 8,
              print=_announce(config, on_serving))
    return EXIT_TREE_FAILED if chorus.state.fatal is not None else 0


def raise_open_file_limit() -> int:
    """Lift the soft open-file limit to the hard one: every connection is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:  # pragma: no cover - a locked-down host
            log.warning("could not raise the open-file limit from %d: %s", soft, error)
            return soft
        log.info("open-file limit raised from %d to %d", soft, hard)
    return hard


def _announce(config: Config, on_serving: Callable[[], None] | None = None,
              ) -> Callable[[str], None]:
    """aiohttp's ``print``, called once every site listens (after the node started)."""
    def announce(message: str) -> None:
        scheme = "https" if config.http_server.tls.enabled else "http"
        host = config.http_server.address or "0.0.0.0"
        from broker.transport.routes import endpoints

        log.info("serving on %s://%s:%d (%s, API: /api/<method>)", scheme, host,
                 config.http_server.port, ", ".join(endpoints(config)))
        if on_serving is not None:
            on_serving()

    return announce
