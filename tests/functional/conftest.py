"""A real Chorus node on a free loopback port, per test, with the config the test asks for."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiohttp import ClientSession, web
from centrifuge import (
    Client,
    ClientEventHandler,
    ClientInfo,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    ErrorContext,
    JoinContext,
    LeaveContext,
    Publication,
    PublicationContext,
    ServerJoinContext,
    ServerLeaveContext,
    ServerPublicationContext,
    ServerSubscribedContext,
    ServerUnsubscribedContext,
    SubscribedContext,
    SubscribingContext,
    Subscription,
    SubscriptionErrorContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)

from broker import Chorus
from broker.auth import make_token
from broker.config import Config, config_from_mapping
from broker.node import Node
from broker.serving import UpgradeRunner
from tests.ports import PortReservation, reserve_port
from tests.waiting import wait_until as wait_until  # re-exported for the tests here

SECRET = "test-secret-0123456789abcdef0123456789"
API_KEY = "test-api-key"


def base_config(**overrides: Any) -> dict[str, Any]:
    """A config mapping for tests: HS256 secret, API key, deep-merged ``overrides``."""
    config: dict[str, Any] = {
        "client": {"token": {"hmac_secret_key": SECRET}},
        "http_api": {"key": API_KEY},
        "channel": {"without_namespace": {"allow_subscribe_for_client": True}},
    }
    return _merge(config, overrides)


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def listening_socket(port: int = 0) -> socket.socket:
    """A listening loopback socket on ``port`` (0: the kernel picks a free one). Serving
    on a socket bound here leaves no gap between picking a port and binding it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's servers do
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock



_HELD: list[PortReservation] = []  # free_port's reservations, kept until the process ends


def free_port() -> int:
    """A port for a test's own server (a backend, a webhook receiver, a node started in
    a subprocess) that nothing else takes: reserved outside the ephemeral range (see
    tests.ports) and held for the rest of this test process, so no other test process
    or outbound connection can take it between this call and the server's bind."""
    reservation = reserve_port()
    _HELD.append(reservation)
    return reservation.port


@dataclass
class RunningNode:
    chorus: Chorus
    port: int
    session: ClientSession

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    @property
    def node(self) -> Node:
        return self.chorus.node

    async def api(self, method: str, params: dict[str, Any], key: str = API_KEY) -> Any:
        async with self.session.post(f"http://127.0.0.1:{self.port}/api/{method}", json=params,
                                     headers={"X-API-Key": key}) as response:
            return response.status, await response.json()


@asynccontextmanager
async def run_node(mapping: dict[str, Any] | Config,
                   setup: Callable[[Chorus], None] | None = None, *,
                   port: int | None = None) -> AsyncIterator[RunningNode]:
    """A node serving ``mapping`` (or a loaded Config) on a port the kernel picks, or on
    ``port`` (a node "restarting" there: take it from ``tests.ports.reserved_port`` and
    hold it, so no other process or outbound connection takes it between the nodes)."""
    chorus = Chorus(mapping if isinstance(mapping, Config) else config_from_mapping(mapping))
    if setup is not None:
        setup(chorus)
    # As ``chorus serve``: WebSocket upgrades answered before aiohttp's request machinery.
    runner = UpgradeRunner(chorus.create_app(), access_log=None)
    await runner.setup()
    try:
        sock = listening_socket(port or 0)
        site = web.SockSite(runner, sock)
        await site.start()
        async with ClientSession() as session:
            yield RunningNode(chorus, int(sock.getsockname()[1]), session)
    finally:
        await runner.cleanup()


@pytest.fixture
async def chorus_node() -> AsyncIterator[RunningNode]:
    """A node with the default test config (token auth, subscribe allowed for clients)."""
    async with run_node(base_config()) as running:
        yield running


# -- the official Python SDK (centrifuge-python) over real sockets --------------------------
WAIT = 5.0  # seconds one expected event may take: generous for a loaded 2-core machine
T = TypeVar("T")


@pytest.fixture(params=[False, True], ids=["json", "protobuf"])
def protobuf(request: pytest.FixtureRequest) -> bool:
    """Run a test once over the JSON protocol and once over protobuf."""
    return bool(request.param)


async def next_event(queue: asyncio.Queue[T], timeout: float = WAIT) -> T:
    """The next item an SDK handler put in ``queue``; fails the test after ``timeout``."""
    return await asyncio.wait_for(queue.get(), timeout)


ConnectingHook = Callable[[ConnectingContext], Awaitable[None]]


class ClientEvents(ClientEventHandler):
    """Every client-level event of the SDK, queued for the test to await.

    ``on_connecting_hook`` runs inside the SDK's teardown, before it schedules a
    reconnect: what it awaits happens while the client is certainly disconnected.
    """

    def __init__(self, on_connecting_hook: ConnectingHook | None = None) -> None:
        self.connecting: asyncio.Queue[ConnectingContext] = asyncio.Queue()
        self.connected: asyncio.Queue[ConnectedContext] = asyncio.Queue()
        self.disconnected: asyncio.Queue[DisconnectedContext] = asyncio.Queue()
        self.errors: asyncio.Queue[ErrorContext] = asyncio.Queue()
        self.subscribed: asyncio.Queue[ServerSubscribedContext] = asyncio.Queue()
        self.unsubscribed: asyncio.Queue[ServerUnsubscribedContext] = asyncio.Queue()
        self.publications: asyncio.Queue[ServerPublicationContext] = asyncio.Queue()
        self.joins: asyncio.Queue[ServerJoinContext] = asyncio.Queue()
        self.leaves: asyncio.Queue[ServerLeaveContext] = asyncio.Queue()
        self.on_connecting_hook = on_connecting_hook

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        self.connecting.put_nowait(ctx)
        if self.on_connecting_hook is not None and ctx.code != 0:  # 0: connect() called
            await self.on_connecting_hook(ctx)

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self.connected.put_nowait(ctx)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.disconnected.put_nowait(ctx)

    async def on_error(self, ctx: ErrorContext) -> None:
        self.errors.put_nowait(ctx)

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        self.subscribed.put_nowait(ctx)

    async def on_unsubscribed(self, ctx: ServerUnsubscribedContext) -> None:
        self.unsubscribed.put_nowait(ctx)

    async def on_publication(self, ctx: ServerPublicationContext) -> None:
        self.publications.put_nowait(ctx)

    async def on_join(self, ctx: ServerJoinContext) -> None:
        self.joins.put_nowait(ctx)

    async def on_leave(self, ctx: ServerLeaveContext) -> None:
        self.leaves.put_nowait(ctx)


@dataclass
class SubEvents(SubscriptionEventHandler):
    """Every event of one SDK subscription, queued for the test to await."""

    subscribing: asyncio.Queue[SubscribingContext] = field(default_factory=asyncio.Queue)
    subscribed: asyncio.Queue[SubscribedContext] = field(default_factory=asyncio.Queue)
    unsubscribed: asyncio.Queue[UnsubscribedContext] = field(default_factory=asyncio.Queue)
    publications: asyncio.Queue[Publication] = field(default_factory=asyncio.Queue)
    joins: asyncio.Queue[ClientInfo] = field(default_factory=asyncio.Queue)
    leaves: asyncio.Queue[ClientInfo] = field(default_factory=asyncio.Queue)
    errors: asyncio.Queue[SubscriptionErrorContext] = field(default_factory=asyncio.Queue)

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        self.subscribing.put_nowait(ctx)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.put_nowait(ctx)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.unsubscribed.put_nowait(ctx)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.publications.put_nowait(ctx.pub)

    async def on_join(self, ctx: JoinContext) -> None:
        self.joins.put_nowait(ctx.info)

    async def on_leave(self, ctx: LeaveContext) -> None:
        self.leaves.put_nowait(ctx.info)

    async def on_error(self, ctx: SubscriptionErrorContext) -> None:
        self.errors.put_nowait(ctx)


@dataclass
class SdkClient:
    """An SDK ``Client`` with its event queues and the payload rules of its protocol."""

    client: Client
    events: ClientEvents
    protobuf: bool

    @property
    def client_id(self) -> str:
        return str(self.client.client_id)

    def payload(self, value: Any) -> Any:
        """``value`` as the SDK takes data: as is for JSON, as JSON bytes for protobuf."""
        return json.dumps(value).encode() if self.protobuf else value

    def value(self, data: Any) -> Any:
        """Received data as a JSON value in both modes (protobuf gives the raw bytes)."""
        return json.loads(data) if isinstance(data, bytes | bytearray) else data

    async def subscribe(self, channel: str, *, wait: bool = True,
                        **options: Any) -> tuple[Subscription, SubEvents]:
        """A new subscription with recorded events; ``wait`` until it is subscribed."""
        events = SubEvents()
        sub = self.client.new_subscription(channel, events=events, **options)
        await sub.subscribe()
        if wait:
            await sub.ready(timeout=WAIT)
        return sub, events


@asynccontextmanager
async def sdk_client(node: RunningNode, *, protobuf: bool = False, user: str = "alice",
                     token: str | None = None, connect: bool = True,
                     events: ClientEvents | None = None,
                     **options: Any) -> AsyncIterator[SdkClient]:
    """An SDK client of ``node`` (token for ``user`` unless ``token`` is given), connected
    unless ``connect`` is False; always disconnected at the end so no reconnect outlives
    the test. ``options`` go to ``centrifuge.Client`` (``get_token``, ``name``, ...)."""
    if token is None:
        token = make_token(SECRET, user)
    recorder = events if events is not None else ClientEvents()
    client = Client(node.ws_url, events=recorder, token=token, use_protobuf=protobuf,
                    proxy=None, **options)
    try:
        if connect:
            await client.connect()
            await client.ready(timeout=WAIT)
        yield SdkClient(client, recorder, protobuf)
    finally:
        await client.disconnect()


def drop_transport(client: Client) -> None:
    """Abort the TCP connection under the SDK without a close frame, as a network
    failure does; both sides then see the socket gone and the SDK reconnects.

    Uses the SDK's private ``_conn`` (a websockets connection): the SDK has no public
    way to simulate a network failure.
    """
    conn = client._conn
    assert conn is not None, "the client has no open connection to drop"
    conn.transport.abort()
