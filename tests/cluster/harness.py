"""Broker nodes as real processes on one Redis, an API publisher, SDK subscribers.

- ``node_processes(tmp, engine_redis, count)``: ``python -m broker serve --config`` per
  node on a reserved loopback port (``tests.ports``), ready when ``/ready`` answers 200
  and the port's listener is that process; a node that lost its port before binding it
  is started again on a new one; SIGTERM (then SIGKILL) on exit.
- ``Publisher``: publishes through every node's ``/api/publish`` in turn, round-robin
  over channels, each payload ``{"n": <unique id>}``; records what was acknowledged
  (``ledger.Acknowledged``) and counts failures. Runs a fixed count or until stopped.
- ``Subscriber``: one centrifuge-python client of one node with a *recoverable*
  subscription per channel, each logging into a ``ledger.SubscriptionLog``.
- ``settle(...)``: wait until every subscription holds or was told about every
  acknowledged publication, then return the audits.
- ``pubsub_connections_of(redis_port, pid)``: Redis client ids of one node's pub/sub
  connections (matched through ``ss``), so a test can cut one node only.

Resource handling: node processes, SDK clients and the publisher task are stopped by
their context managers whatever the test does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import ClientError, ClientSession, ClientTimeout
from centrifuge import (
    Client,
    PublicationContext,
    SubscribedContext,
    SubscribingContext,
    SubscriptionEventHandler,
)

from tests.cluster.ledger import Acknowledged, Audit, SubscriptionLog, audit
from tests.ports import PortReservation, reserve_port

API_KEY = "cluster-key"
REPO = Path(__file__).resolve().parents[2]


def node_config(port: int, engine_redis: dict[str, Any], history_size: int) -> dict[str, Any]:
    return {
        "client": {"insecure": True},
        "http_api": {"key": API_KEY},
        "http_server": {"address": "127.0.0.1", "port": port},
        "engine": {"type": "redis", "redis": {"prefix": "cl", **engine_redis}},
        "channel": {"without_namespace": {
            "history_size": history_size, "history_ttl": "300s", "allow_recovery": True,
            "allow_subscribe_for_client": True}},
        "log": {"level": "warn"},
        "chorus": {"shutdown_timeout": "2s"},
    }


@dataclass
class NodeProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    reservation: PortReservation

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


class PortLost(RuntimeError):
    """The node exited because its port was bound by someone else first."""


def _listener_pids(port: int) -> set[int]:
    out = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True,
                         text=True, check=False).stdout
    return {int(pid) for pid in re.findall(r"pid=(\d+)", out)}


async def _ready(http: ClientSession, node: NodeProcess, timeout: float) -> None:
    """Until ``/ready`` answers 200 from *this* process (``ss``: a process outside the
    port reservation could hold the port and answer while ours fails to bind).

    Error handling: PortLost if the node exited on a bind failure; RuntimeError with the
    log tail if it exited otherwise or is not ready within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if node.process.poll() is not None:
            tail = node.log_tail()
            lost = "address already in use" in tail.lower()
            raise (PortLost if lost else RuntimeError)(f"node on {node.port} exited:\n{tail}")
        with contextlib.suppress(ClientError, OSError):
            async with http.get(f"{node.base}/ready") as response:
                if response.status == 200 and _listener_pids(node.port) == {node.process.pid}:
                    return
        if loop.time() > deadline:
            raise RuntimeError(f"node on {node.port} not ready in {timeout}s:\n{node.log_tail()}")
        await asyncio.sleep(0.05)  # a starting process: no event to await


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _spawn(tmp: Path, index: int, config: dict[str, Any]) -> NodeProcess:
    reservation = reserve_port()  # held until the node is stopped
    port = reservation.port
    path = tmp / f"node{index}.json"
    path.write_text(json.dumps(
        {**config, "http_server": {**config["http_server"], "port": port}}))
    log = tmp / f"node{index}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "broker", "serve", "--config", str(path)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    return NodeProcess(process, port, log, reservation)


async def _start_ready(http: ClientSession, nodes: list[NodeProcess], index: int,
                       tmp: Path, config: dict[str, Any], attempts: int = 3) -> None:
    """Wait for ``nodes[index]``; one that lost its port (only that) is replaced in the
    list by a node started on a new port, so the caller stops whatever runs."""
    for attempt in range(attempts):
        try:
            await _ready(http, nodes[index], 30)
            return
        except PortLost:
            if attempt == attempts - 1:
                raise
            _release(nodes[index])
            nodes[index] = _spawn(tmp, index, config)


def _release(node: NodeProcess) -> None:
    _stop(node.process)
    node.reservation.release()


@contextlib.asynccontextmanager
async def node_processes(tmp: Path, engine_redis: dict[str, Any], count: int = 3, *,
                         history_size: int = 1000, extra: dict[str, Any] | None = None,
                         ) -> AsyncIterator[list[NodeProcess]]:
    """``count`` broker processes sharing ``engine_redis`` (the ``engine.redis`` keys);
    ``extra`` are more top-level config sections (replacing the defaults')."""
    config = {**node_config(0, engine_redis, history_size), **(extra or {})}
    nodes: list[NodeProcess] = []
    try:
        nodes.extend(_spawn(tmp, i, config) for i in range(count))
        async with ClientSession() as http:
            for i in range(count):
                await _start_ready(http, nodes, i, tmp, config)
        yield nodes
    finally:
        for node in nodes:
            _release(node)


# -- publishing ------------------------------------------------------------------------------
@dataclass
class Publisher:
    """Round-robin publisher over ``nodes`` x ``channels`` (see the module docstring)."""

    nodes: Sequence[NodeProcess]
    channels: Sequence[str]
    acked: Acknowledged = field(default_factory=Acknowledged)
    attempted: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish_one(self, http: ClientSession) -> bool:
        n = self.attempted
        self.attempted += 1
        node = self.nodes[n % len(self.nodes)]
        channel = self.channels[n % len(self.channels)]
        try:
            async with http.post(f"{node.base}/api/publish",
                                 json={"channel": channel, "data": {"n": n}},
                                 headers={"X-API-Key": API_KEY}) as response:
                body = await response.json()
        except (ClientError, OSError, TimeoutError, ValueError) as error:
            body = {"error": {"message": f"{type(error).__name__}: {error}"}}
        result = body.get("result")
        if result is None or not result.get("offset"):
            self.failed += 1
            if len(self.failures) < 5:
                self.failures.append(str(body.get("error", body)))
            return False
        self.acked.add(channel, result["epoch"], int(result["offset"]), n)
        return True

    async def run(self, count: int | None = None, interval: float = 0.0) -> None:
        """Publish ``count`` (or until ``stop()``), one at a time, ``interval`` apart."""
        async with ClientSession(timeout=ClientTimeout(total=10)) as http:
            while not self._stop.is_set() and (count is None or self.attempted < count):
                await self.publish_one(http)
                if interval:
                    await asyncio.sleep(interval)  # pacing the load, not awaiting a state

    def stop(self) -> None:
        self._stop.set()

    @contextlib.asynccontextmanager
    async def continuously(self, interval: float) -> AsyncIterator[Publisher]:
        """Publish in the background for the duration of the block."""
        task = asyncio.get_running_loop().create_task(self.run(interval=interval))
        try:
            yield self
        finally:
            self.stop()
            await task


# -- subscribing -----------------------------------------------------------------------------
class _Recorder(SubscriptionEventHandler):
    def __init__(self, log: SubscriptionLog) -> None:
        self.log = log
        self.unsubscribe_codes: list[int] = []

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        if ctx.code >= 2500:  # a server unsubscribe push asking to resubscribe
            self.unsubscribe_codes.append(ctx.code)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        position = ctx.stream_position
        assert position is not None, "a recoverable subscription has a position"
        self.log.subscribed(position.epoch, position.offset,
                            was_recovering=ctx.was_recovering, recovered=ctx.recovered)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.log.publication(ctx.pub.offset, int(ctx.pub.data["n"]))


@dataclass
class Subscriber:
    """One SDK client of one node, recoverable subscriptions on every channel."""

    node: int
    client: Client
    recorders: list[_Recorder]

    @property
    def logs(self) -> list[SubscriptionLog]:
        return [r.log for r in self.recorders]


@contextlib.asynccontextmanager
async def subscribers(nodes: Sequence[NodeProcess], channels: Sequence[str],
                      per_node: int = 1) -> AsyncIterator[list[Subscriber]]:
    """``per_node`` SDK clients on every node, each subscribed (recoverable) to every
    channel; returns once all subscriptions are subscribed."""
    subs: list[Subscriber] = []
    try:
        for index, node in enumerate(nodes):
            for _ in range(per_node):
                client = Client(node.ws_url, proxy=None, min_reconnect_delay=0.05,
                                max_reconnect_delay=1.0)
                recorders = []
                for channel in channels:
                    recorder = _Recorder(SubscriptionLog(channel))
                    sub = client.new_subscription(channel, events=recorder, recoverable=True,
                                                  min_resubscribe_delay=0.05,
                                                  max_resubscribe_delay=1.0)
                    recorders.append(recorder)
                    await sub.subscribe()
                subs.append(Subscriber(index, client, recorders))
                await client.connect()
        for s in subs:
            for sub in s.client.subscriptions().values():
                await sub.ready(timeout=10)
        yield subs
    finally:
        for s in subs:
            await s.client.disconnect()


@dataclass
class Outcome:
    """Totals over every subscription, for the assertion message and the report."""

    acknowledged: int
    failed: int
    held: int
    signalled: int
    pending: int
    signals: int
    unsubscribe_pushes: int
    problems: list[str]

    def line(self) -> str:
        return (f"acknowledged={self.acknowledged} failed={self.failed} held={self.held} "
                f"signalled={self.signalled} pending={self.pending} signals={self.signals} "
                f"unsubscribe_pushes={self.unsubscribe_pushes}")

    def details(self) -> str:
        """``line()`` and every problem in full, one a line (an assertion message)."""
        return "\n".join([self.line(), *self.problems])


def outcome(publisher: Publisher, subs: Sequence[Subscriber]) -> Outcome:
    audits: list[tuple[str, Audit, SubscriptionLog]] = []
    for s in subs:
        for log in s.logs:
            acked = publisher.acked.by_channel.get(log.channel, {})
            audits.append((f"node{s.node}/{log.channel}", audit(log, acked), log))
    # What the subscription saw goes with each problem: a flake is diagnosed from it.
    problems = [f"{where}: silent {a.silent[:5]} violations {a.violations[:5]} "
                f"saw: {log.trace()}" for where, a, log in audits if not a.clean]
    problems += [f"offset reused: {r}" for r in publisher.acked.reused[:5]]
    return Outcome(
        acknowledged=publisher.acked.count(), failed=publisher.failed,
        held=sum(a.held for _, a, _ in audits),
        signalled=sum(a.signalled for _, a, _ in audits),
        pending=sum(a.pending for _, a, _ in audits),
        signals=sum(a.signals for _, a, _ in audits),
        unsubscribe_pushes=sum(len(r.unsubscribe_codes) for s in subs for r in s.recorders),
        problems=problems)


async def settle(publisher: Publisher, subs: Sequence[Subscriber],
                 timeout: float = 20.0) -> Outcome:
    """Wait until nothing is pending and nothing is (still) missing, or the deadline;
    returns the final outcome (the caller asserts on it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = outcome(publisher, subs)
        if (result.pending == 0 and not result.problems) or loop.time() > deadline:
            return result
        await asyncio.sleep(0.05)  # SDK callbacks land in lists; nothing to await on


# -- Redis side --------------------------------------------------------------------------------
def _local_ports_of(pid: int, redis_port: int) -> set[int]:
    out = subprocess.run(["ss", "-Htnp", f"dport = :{redis_port}"], capture_output=True,
                         text=True, check=False).stdout
    ports = set()
    for line in out.splitlines():
        if f"pid={pid}," in line:
            local = line.split()[3]
            ports.add(int(local.rsplit(":", 1)[1]))
    return ports


async def pubsub_connections_of(admin: aioredis.Redis, redis_port: int, pid: int) -> list[int]:
    """Redis client ids of the pub/sub connections that process ``pid`` holds."""
    ports = _local_ports_of(pid, redis_port)
    clients = await admin.client_list(_type="pubsub")
    return [int(c["id"]) for c in clients
            if int(re.sub(r".*:", "", str(c["addr"]))) in ports]

