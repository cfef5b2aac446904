"""The incident each runbook is about, injected into a running local cluster.

Each ``Incident`` has ``setup`` (before the page's Before blocks), ``inject`` (after them,
before Confirm: it returns once the incident is what an operator finds when the alert
comes) and ``cleanup`` (after the page, whatever happened). ``env`` adds the page's
variables (``NODE``, ``NODE_URL``, ``CHANNEL``, ``BACKUP_FILE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from broker.devcluster.control import cluster_restart
from tests.deploy.runbooks import Client, metric, never_reading_subscriber, state_pid
from tests.waiting import wait_until


@dataclass
class Ctx:
    """What an incident needs of the cluster."""

    state: dict[str, Any]
    state_dir: Path
    tmp: Path
    session: aiohttp.ClientSession
    clients: list[Client] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def node_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.state['ports']['nodes'][index - 1]}"

    @property
    def balancer_ws(self) -> str:
        return f"ws://127.0.0.1:{self.state['ports']['balancer']}/connection/websocket"

    async def redis(self, port: int, *command: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "redis-cli", "-p", str(port), *command, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        return out.decode()

    async def primary(self) -> int:
        sentinel = self.state["ports"]["sentinels"][0]
        reply = await self.redis(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "chorus")
        return int(reply.split()[1])

    async def publish(self, node: int, channel: str, data: Any) -> dict[str, Any]:
        async with self.session.post(f"{self.node_url(node)}/api/publish",
                                     json={"channel": channel, "data": data},
                                     headers={"X-API-Key": self.state["api_key"]}) as resp:
            reply: dict[str, Any] = await resp.json()
            return reply


class Incident:
    env: ClassVar[dict[str, str]] = {"CHANNEL": "runbook-probe"}

    def page_env(self, ctx: Ctx) -> dict[str, str]:
        return dict(self.env)

    async def setup(self, ctx: Ctx) -> None:
        """Before the page's Before blocks."""

    async def inject(self, ctx: Ctx) -> None:
        """Cause the incident; return once it is there to be seen."""

    async def cleanup(self, ctx: Ctx) -> None:
        for task in ctx.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in ctx.clients:
            await client.close()
        for sock in ctx.sockets:
            sock.close()
        ctx.clients.clear()
        ctx.sockets.clear()
        ctx.tasks.clear()


class SentinelFailover(Incident):
    """``SENTINEL FAILOVER``: the replica becomes primary, the nodes follow."""

    async def inject(self, ctx: Ctx) -> None:
        before, logged = await ctx.primary(), switch_master_lines(ctx.state_dir)
        sentinel = ctx.state["ports"]["sentinels"][0]
        assert (await ctx.redis(sentinel, "SENTINEL", "FAILOVER", "chorus")).strip() == "OK"

        # Sentinel names the promoted replica as soon as it reconfigures the others,
        # before the failover ends and `+switch-master` is logged (seen once in CI): the
        # page's Confirm reads both, so wait for both.
        async def switched() -> bool:
            return (await ctx.primary() != before
                    and switch_master_lines(ctx.state_dir) > logged)

        await wait_until(switched, "Sentinel switching the primary", timeout=30, interval=0.2)


def switch_master_lines(state_dir: Path) -> int:
    """How many ``+switch-master`` lines the cluster's Sentinels have logged so far."""
    return sum(log.read_text(errors="replace").count("+switch-master")
               for log in state_dir.glob("sentinel-*/sentinel.log"))


class RedisPrimaryLost(Incident):
    """SIGKILL the Redis server that is primary now; wait for Sentinel's failover."""

    async def inject(self, ctx: Ctx) -> None:
        port = await ctx.primary()
        ports = ctx.state["ports"]
        name = "redis-primary" if port == ports["primary"] else "redis-replica"
        os.kill(state_pid(ctx.state_dir, name), signal.SIGKILL)

        async def failed_over() -> bool:
            return await ctx.primary() != port

        await wait_until(failed_over, "Sentinel promoting the replica", timeout=60, interval=0.2)
        sentinel = ctx.state["ports"]["sentinels"][0]

        async def marked_down() -> bool:  # the lost server, listed as a replica now
            return "s_down" in await ctx.redis(sentinel, "SENTINEL", "REPLICAS", "chorus")

        await wait_until(marked_down, "Sentinel marking the lost server down", timeout=30,
                         interval=0.2)


class RestoreFromBackup(Incident):
    """History in a channel (backed up by the page's Before block), then FLUSHALL."""

    env: ClassVar[dict[str, str]] = {"CHANNEL": "runbook-history"}

    def page_env(self, ctx: Ctx) -> dict[str, str]:
        return {**self.env, "BACKUP_FILE": str(ctx.tmp / "chorus-backup.jsonl.gz")}

    async def setup(self, ctx: Ctx) -> None:
        for n in range(5):
            reply = await ctx.publish(1, "runbook-history", {"n": n})
            assert "result" in reply, reply

    async def inject(self, ctx: Ctx) -> None:
        assert (await ctx.redis(await ctx.primary(), "FLUSHALL")).strip() == "OK"


class SlowConsumers(Incident):
    """A subscriber on node 1 that never reads, and 4 MiB published to its channel."""

    def page_env(self, ctx: Ctx) -> dict[str, str]:
        return {**self.env, "NODE": "node-1", "NODE_URL": ctx.node_url(1)}

    async def inject(self, ctx: Ctx) -> None:
        url = ctx.node_url(1)
        before = await metric(ctx.session, url, "chorus_slow_consumer_disconnects_total")
        port = ctx.state["ports"]["nodes"][0]
        ctx.sockets.append(await asyncio.to_thread(never_reading_subscriber, port,
                                                   "runbook-slow"))
        pad = "x" * 65536
        for n in range(64):
            reply = await ctx.publish(1, "runbook-slow", {"n": n, "pad": pad})
            assert "result" in reply, reply

        async def cut() -> bool:
            return await metric(ctx.session, url, "chorus_slow_consumer_disconnects_total") > before

        await wait_until(cut, "the node cutting the slow consumer", timeout=20, interval=0.2)


FD_ALERT = "open_files will exceed open_files_limit within 10m"  # a default rule


class FdPressure(Incident):
    """Node 2's soft descriptor limit lowered to its use + 260, then 230 connections."""

    CONNECTIONS = 230

    def page_env(self, ctx: Ctx) -> dict[str, str]:
        return {**self.env, "NODE": "node-2", "NODE_URL": ctx.node_url(2)}

    async def inject(self, ctx: Ctx) -> None:
        pid = state_pid(ctx.state_dir, "node-2")
        in_use = len(os.listdir(f"/proc/{pid}/fd"))
        proc = await asyncio.create_subprocess_exec(
            "prlimit", "--pid", str(pid), f"--nofile={in_use + 260}:")
        assert await proc.wait() == 0
        url = ctx.node_url(2).replace("http", "ws") + "/connection/websocket"
        for _ in range(self.CONNECTIONS):
            client = Client(ctx.session, url, "runbook-fd")
            await client.connect()
            client.start()
            ctx.clients.append(client)

        async def pressed() -> bool:
            fds = await metric(ctx.session, ctx.node_url(2), "process_open_fds")
            limit = await metric(ctx.session, ctx.node_url(2), "process_max_fds")
            return fds > 0.8 * limit

        await wait_until(pressed, "descriptors above 80 % of the limit", timeout=20,
                         interval=0.2)
        headers = {"Authorization": f"Bearer {_admin_secret(ctx)}"}

        async def alerted() -> bool:  # the signal the operator got
            async with ctx.session.get(f"{ctx.node_url(2)}/admin/api/alerts",
                                       headers=headers) as response:
                active = (await response.json())["active"]
            return any(a["name"] == FD_ALERT for a in active)

        await wait_until(alerted, f"the alert {FD_ALERT!r}", timeout=30, interval=0.5)


class ReconnectStorm(Incident):
    """40 clients through nginx that reconnect every 0.1-0.4 s for 16 s, then stay."""

    STORM = 16.0

    async def inject(self, ctx: Ctx) -> None:
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.STORM
        ctx.clients.extend(Client(ctx.session, ctx.balancer_ws, "runbook-storm", reconnect=True)
                           for _ in range(40))

        async def churn(client: Client) -> None:
            while loop.time() < ends:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError,
                                         AssertionError):
                    await client.connect()
                    await asyncio.sleep(0.1 + 0.3 * (id(client) % 7) / 7)  # held a moment
                    assert client.ws is not None
                    await client.ws.close()
            client.start()  # the storm is over: stay connected (reconnect on close)

        ctx.tasks.extend(loop.create_task(churn(client)) for client in ctx.clients)
        await wait_until(lambda: sum(c.connects for c in ctx.clients) >= 100,
                         "the storm under way", timeout=15, interval=0.1)


class NodeRestarting(Incident):
    """Node 2 SIGKILLed three times, started again each time (as systemd would)."""

    def page_env(self, ctx: Ctx) -> dict[str, str]:
        return {**self.env, "NODE": "node-2", "NODE_URL": ctx.node_url(2)}

    async def inject(self, ctx: Ctx) -> None:
        for _ in range(3):
            pid = state_pid(ctx.state_dir, "node-2")
            os.kill(pid, signal.SIGKILL)
            await wait_until(lambda p=pid: not _running(p), "node-2 gone", timeout=10)
            await asyncio.to_thread(cluster_restart, ctx.state_dir, "node-2")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in "ZX"


class RollingRestart(Incident):
    """30 clients through nginx that reconnect when told to (as the SDKs do)."""

    CLIENTS = 30

    async def setup(self, ctx: Ctx) -> None:
        for _ in range(self.CLIENTS):
            client = Client(ctx.session, ctx.balancer_ws, "runbook-rolling", reconnect=True)
            await client.connect()
            client.start()
            ctx.clients.append(client)
        headers = {"Authorization": f"Bearer {_admin_secret(ctx)}"}

        async def announced() -> bool:  # the Before block counts what the nodes announce
            async with ctx.session.get(f"{ctx.node_url(1)}/admin/api/nodes",
                                       headers=headers) as response:
                nodes = (await response.json())["nodes"]
            return sum(n["num_clients"] for n in nodes) == self.CLIENTS

        await wait_until(announced, "every node announcing its clients", timeout=30,
                         interval=0.2)


def _admin_secret(ctx: Ctx) -> str:
    import yaml

    secret: str = yaml.safe_load((ctx.state_dir / "node-1.yaml").read_text())["admin"]["secret"]
    return secret


INCIDENTS: dict[str, Incident] = {  # the order the test runs them in, on one cluster
    "sentinel-failover.md": SentinelFailover(),
    "redis-primary-lost.md": RedisPrimaryLost(),
    "restore-from-backup.md": RestoreFromBackup(),
    "slow-consumers.md": SlowConsumers(),
    "memory-fd-pressure.md": FdPressure(),
    "reconnect-storm.md": ReconnectStorm(),
    "node-restarting.md": NodeRestarting(),
    "rolling-restart.md": RollingRestart(),
}

__all__ = ["INCIDENTS", "Ctx", "Incident"]
