"""Failure at every level of the tree, under live traffic, checked with an offset ledger.

Each test crashes a whole supervisor (or its children past the supervisor's restart
intensity, so that it escalates) while a publisher writes to recoverable channels and
SDK clients are subscribed. Afterwards:

- 0 publications silently lost: every subscriber holds every acknowledged offset of its
  channels exactly once and in order (recovery after its reconnect), or was explicitly
  told it could not recover;
- every client is served again within 5 s (it reconnected and resubscribed);
- no zombie: every connection the node lists has a live actor, and every connection
  actor is listed (an open socket always has a live actor, and the reverse).

And when the root itself fails, every socket is closed with a reconnect code and the
fatal handler runs (``chorus serve`` then exits with status 70: see test_cli_fatal).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import orjson
import pytest

from actors import Runtime
from broker import Chorus
from tests.functional.conftest import (
    WAIT,
    RunningNode,
    SdkClient,
    SubEvents,
    base_config,
    run_node,
    sdk_client,
    wait_until,
)

SHARDS = 4
CHANNELS = [f"feed:{i}" for i in range(6)]
BACK_WITHIN = 5.0  # seconds for every client to be served again


def config() -> dict[str, object]:
    feed = {"name": "feed", "history_size": 10_000, "history_ttl": "300s",
            "force_recovery": True, "allow_subscribe_for_client": True}
    return base_config(admin={"allow_crash_actor": True}, chorus={"shard_count": SHARDS},
                       channel={"namespaces": [feed]})


@dataclass
class Subscriber:
    sdk: SdkClient
    channels: dict[str, SubEvents]
    offsets: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def drain(self) -> None:
        for channel, events in self.channels.items():
            while not events.publications.empty():
                self.offsets[channel].append(events.publications.get_nowait().offset)


@dataclass
class World:
    node: RunningNode
    subscribers: list[Subscriber]
    fatal: list[BaseException]

    @property
    def runtime(self) -> Runtime:
        return self.node.node.runtime


@pytest.fixture
async def world() -> AsyncIterator[World]:
    fatal: list[BaseException] = []

    def setup(chorus: Chorus) -> None:
        chorus._on_fatal = fatal.append  # the default would SIGTERM the test process

    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(run_node(config(), setup))
        subscribers = []
        for i in range(6):
            sdk = await stack.enter_async_context(sdk_client(
                node, protobuf=bool(i % 2), user=f"user-{i}", min_reconnect_delay=0.05,
                max_reconnect_delay=0.3))
            channels = {}
            for channel in (CHANNELS[i % 6], CHANNELS[(i + 1) % 6], CHANNELS[(i + 3) % 6]):
                _, channels[channel] = await sdk.subscribe(channel)
            subscribers.append(Subscriber(sdk, channels))
        yield World(node, subscribers, fatal)


async def publisher(node: RunningNode, acked: dict[str, list[int]], stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        channel = CHANNELS[n % len(CHANNELS)]
        status, body = await node.api("publish", {"channel": channel, "data": {"n": n}})
        if status == 200 and "result" in body:
            acked[channel].append(body["result"]["offset"])
        n += 1
        await asyncio.sleep(0.003)


def no_zombies(world: World) -> None:
    node = world.node.node
    listed = {f"chorus/connections/{c}" for c in node.connections}
    registry = world.runtime.registry
    actors = {i for i in registry.ids() if i.startswith("chorus/connections/")
              and getattr(registry.get(i), "kind", "") == "connection"}
    assert listed == actors, f"sockets without actors {listed - actors}, " \
                             f"actors without sockets {actors - listed}"
    for conn in node.connections.values():
        assert not conn.link.closed or conn._closing, f"{conn.session.client_id}: socket closed"


async def served_again(world: World, since: float) -> float:
    """Wait until every client is connected, subscribed and known to a live actor;
    returns how long it took from ``since``."""
    node = world.node.node

    def all_back() -> bool:
        for sub in world.subscribers:
            client = sub.sdk.client
            if client.state.value != "connected" or client.client_id not in node.connections:
                return False
            if any(s.state.value != "subscribed" for s in client.subscriptions().values()):
                return False
        return True

    await wait_until(all_back, "every client connected and subscribed again", BACK_WITHIN + 5)
    return time.monotonic() - since


async def under_traffic(world: World, fault: Callable[[], object]) -> float:
    """Run ``fault`` while publishing; check the ledger; return the time to recover."""
    acked: dict[str, list[int]] = defaultdict(list)
    stop = asyncio.Event()
    task = asyncio.create_task(publisher(world.node, acked, stop))
    try:
        await wait_until(lambda: sum(map(len, acked.values())) >= 30, "traffic before the fault")
        started = time.monotonic()
        result = fault()
        if asyncio.iscoroutine(result):
            await result
        took = await served_again(world, started)
        await wait_until(lambda: sum(map(len, acked.values())) >= 60, "traffic after the fault")
    finally:
        stop.set()
        await task

    def caught_up() -> bool:
        for sub in world.subscribers:
            sub.drain()
            for channel in sub.channels:
                got = sub.offsets[channel]
                if acked[channel] and (not got or got[-1] < acked[channel][-1]):
                    return False
        return True

    await wait_until(caught_up, "every subscriber to reach the last acked offset", WAIT * 2)
    for sub in world.subscribers:
        for channel in sub.channels:
            got = sub.offsets[channel]
            assert got == sorted(set(got)), f"{channel}: repeats or disorder"
            assert set(acked[channel]) <= set(got), \
                f"{channel}: lost {sorted(set(acked[channel]) - set(got))[:10]}"
    no_zombies(world)
    assert took < BACK_WITHIN, f"clients served again after {took:.2f} s"
    return took


async def crash_past_intensity(runtime: Runtime, child: str, times: int) -> None:
    """Crash ``child`` (re-found after each restart) ``times`` times in a row."""
    for _ in range(times):
        await wait_until(lambda: runtime.registry.get(child) is not None and
                         runtime.registry.get(child).state == "running",  # type: ignore[union-attr]
                         f"{child} running", WAIT)
        runtime.crash_actor(child, "fault injection")
        await asyncio.sleep(0)


@pytest.mark.slow
async def test_connections_supervisor_crash_leaves_no_zombie(world: World) -> None:
    """Issue 12 item 2: the connections supervisor's children used to be killed without
    a release path: sockets stayed open, shards kept writing to them, commands timed out."""
    await under_traffic(world, lambda: world.runtime.crash_actor("chorus/connections"))
    assert world.runtime.root_down is None and not world.fatal


@pytest.mark.slow
async def test_shards_supervisor_past_its_intensity(world: World) -> None:
    # One shard crashed more often than the shards supervisor allows (max(3, S) in 5 s):
    # it gives up, and the root restarts it and everything after it (rest_for_one).
    await under_traffic(world, lambda: crash_past_intensity(
        world.runtime, "chorus/shards/shard-0", SHARDS + 1))
    record = world.runtime.registry.get("chorus/shards")
    assert record is not None and record.restarts >= 1


@pytest.mark.slow
async def test_engine_supervisor_past_its_intensity(world: World) -> None:
    await under_traffic(world, lambda: crash_past_intensity(world.runtime, "chorus/engine/link", 4))


@pytest.mark.slow
async def test_monitors_supervisor_past_its_intensity(world: World) -> None:
    await under_traffic(world, lambda: crash_past_intensity(
        world.runtime, "chorus/monitors/node", 4))


@pytest.mark.slow
async def test_root_failure_closes_every_socket_and_calls_the_fatal_handler(
        world: World) -> None:
    # The root allows 3 restarts in 5 s: a fourth crash of a top-level supervisor fails it.
    for _ in range(4):
        await crash_past_intensity(world.runtime, "chorus/monitors", 1)
        if world.runtime.root_down is not None:
            break
    await wait_until(lambda: bool(world.fatal), "the fatal handler to run", WAIT)
    assert world.runtime.root_down is not None
    await wait_until(lambda: not world.node.node.connections, "every connection released")
    for sub in world.subscribers:  # each client saw its socket closed (and reconnects)
        await wait_until(lambda s=sub: s.sdk.client.state.value != "connected" or  # type: ignore[misc]
                         s.sdk.events.connected.qsize() > 1, "the client to lose its socket")
    async with world.node.session.get(f"http://127.0.0.1:{world.node.port}/ready") as ready:
        assert ready.status == 503


@pytest.mark.slow
async def test_cli_fatal_exits_non_zero_after_closing_sockets(tmp_path: object) -> None:
    """``chorus serve`` whose root fails: the client's socket is closed with a reconnect
    code and the process exits with status 70, for its parent to replace it."""
    import aiohttp

    from broker.app import EXIT_TREE_FAILED
    from broker.auth import make_token
    from tests.functional.conftest import SECRET
    from tests.reliability.helpers import serve

    mapping = {**config(), "admin": {"enabled": True, "insecure": True,
                                     "allow_crash_actor": True}}
    served = await serve(mapping, str(tmp_path), log_level="info")
    base = f"http://127.0.0.1:{served.port}"
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"ws://127.0.0.1:{served.port}/connection/websocket")
            token = make_token(SECRET, "u")
            await ws.send_str(orjson.dumps({"id": 1, "connect": {"token": token}}).decode())
            assert "connect" in (await ws.receive(timeout=WAIT)).data
            for _ in range(8):  # the root allows 3 restarts in 5 s
                try:
                    async with session.post(f"{base}/admin/api/actors/chorus/monitors/crash"):
                        pass
                except aiohttp.ClientError:
                    break  # the process is on its way out
                await asyncio.sleep(0.05)
            closed = await ws.receive(timeout=WAIT)
            assert closed.type is aiohttp.WSMsgType.CLOSE
            assert 3000 <= closed.data < 3500, closed  # a reconnect code
        code = await asyncio.wait_for(served.process.wait(), 20)
        assert code == EXIT_TREE_FAILED, served.output()
        assert "actor tree failed" in served.output()
    finally:
        if served.process.returncode is None:
            served.process.kill()
            await served.process.wait()
