"""End to end: ``chorus cluster up`` on free ports, a client on node 1, publications on
node 3, a Sentinel failover in the middle — every acknowledged publication arrives, or
the subscriber is told it missed some (a resubscribe answers ``recovered: false``):
never a silent gap.

The cluster runs as real processes (Redis primary + replica + 3 Sentinels, 3 nodes,
nginx), started and stopped through the CLI exactly as a user would.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from broker.devcluster.launcher import leftover_processes
from tests.resync_client import ResyncingSubscriber

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]
CHANNEL = "x"  # channels without namespace keep history in the generated configs


def _cluster(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "broker", "cluster", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    for binary in ("redis-server", "redis-cli", "nginx"):
        if shutil.which(binary) is None and shutil.which(binary, path="/usr/sbin") is None:
            pytest.skip(f"{binary} is not installed")
    state_dir = tmp_path_factory.mktemp("chorus-cluster")
    started = time.monotonic()
    up = _cluster("up", "--state-dir", str(state_dir), "--base-port", "0", "--insecure")
    assert up.returncode == 0, up.stderr[-3000:]
    state: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    print(f"cluster up in {time.monotonic() - started:.1f} s")
    try:
        yield state
    finally:
        down = _cluster("down", "--state-dir", str(state_dir))
        assert down.returncode == 0, down.stderr[-3000:]
        assert leftover_processes(state) == []
        ports = state["ports"]
        every_port = [ports["balancer"], *ports["nodes"], ports["primary"], ports["replica"],
                      *ports["sentinels"]]
        assert [p for p in every_port if _listening(p)] == []


async def subscribe(session: aiohttp.ClientSession, url: str) -> ResyncingSubscriber:
    subscriber = ResyncingSubscriber(session, url, CHANNEL)
    await subscriber.start()
    return subscriber


@dataclass
class Publisher:
    """Publishes n = 0, 1, 2 ... through one node's API; keeps what was acknowledged."""

    session: aiohttp.ClientSession
    url: str
    key: str
    acked: list[tuple[int, int, float]] = field(default_factory=list)  # offset, n, when
    failures: int = 0
    epochs: set[str] = field(default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            body = {"channel": CHANNEL, "data": {"n": n}}
            try:
                async with self.session.post(self.url, json=body,
                                             headers={"X-API-Key": self.key},
                                             timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    reply = await resp.json()
            except (TimeoutError, aiohttp.ClientError):
                reply = {}
            if "result" in reply:
                self.acked.append((reply["result"]["offset"], n, time.monotonic()))
                self.epochs.add(reply["result"]["epoch"])
            else:
                self.failures += 1
            n += 1
            await asyncio.sleep(0.05)  # pacing the load, not waiting for a condition


async def until(check: Any, timeout: float) -> bool:
    """Poll ``check`` (other processes' progress: nothing to await); False on timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def redis_cli(port: int, *command: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        "redis-cli", "-p", str(port), *command, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return out


async def primary_port(sentinel: int, name: str) -> int:
    out = await redis_cli(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
    return int(out.split()[1])


async def test_publications_cross_nodes_and_survive_a_sentinel_failover(
        cluster: dict[str, Any]) -> None:
    ports, name = cluster["ports"], cluster["master_name"]
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        direct = await subscribe(session, f"ws://127.0.0.1:{ports['nodes'][0]}"
                                          "/connection/websocket")
        balanced = await subscribe(session, f"ws://127.0.0.1:{ports['balancer']}"
                                            "/connection/websocket")
        readers = [asyncio.create_task(s.read()) for s in (direct, balanced)]
        publisher = Publisher(session, f"http://127.0.0.1:{ports['nodes'][2]}/api/publish",
                              cluster["api_key"])
        stop = asyncio.Event()
        publishing = asyncio.create_task(publisher.run(stop))

        # node 3 -> node 1 before anything breaks
        await asyncio.wait_for(direct.arrived.wait(), 10)
        assert await until(lambda: len(publisher.acked) >= 5, 10), "publishing failed"
        old = await primary_port(ports["sentinels"][0], name)
        assert old == ports["primary"]

        failover = await redis_cli(ports["sentinels"][0], "SENTINEL", "FAILOVER", name)
        assert failover.strip() == b"OK"
        switched_at = time.monotonic()
        while await primary_port(ports["sentinels"][0], name) != ports["replica"]:
            assert time.monotonic() - switched_at < 15, "sentinels did not switch"
            await asyncio.sleep(0.1)  # polling Sentinel: nothing to await

        # The old primary keeps accepting writes until Sentinel demotes it (about 10 s
        # later); only what is acknowledged after that proves nothing written there was lost.
        while b"slave" not in await redis_cli(old, "ROLE"):
            assert time.monotonic() - switched_at < 30, "old primary not demoted"
            await asyncio.sleep(0.1)  # polling Redis: nothing to await
        demoted_at = time.monotonic()

        def after_failover() -> int:
            return sum(1 for _, _, when in publisher.acked if when > demoted_at)

        assert await until(lambda: after_failover() >= 10, 40), "no publishing after failover"
        stop.set()
        await publishing
        acked = [(offset, n) for offset, n, _ in publisher.acked]
        acked_at = {(offset, n): when for offset, n, when in publisher.acked}

        def settled(subscriber: ResyncingSubscriber) -> bool:  # received, or told it was missed
            return all(pub in subscriber.pubs or subscriber.told_missed_after(acked_at[pub])
                       for pub in acked)

        for subscriber in (direct, balanced):
            await until(lambda s=subscriber: settled(s), 10)
        for reader in readers:
            reader.cancel()

    for subscriber in (direct, balanced):
        for offsets in subscriber.offsets_by_epoch().values():
            assert offsets == sorted(set(offsets)), "in offset order, no duplicates"
        # Never a silent gap: an acknowledged publication not received must be covered
        # by a resubscribe that answered recovered: false (the unconfirmed publications
        # the old primary stored and the new one lacked: README, Guarantees).
        lost = [pub for pub in sorted(set(acked) - set(subscriber.pubs))
                if not subscriber.told_missed_after(acked_at[pub])]
        assert lost == [], f"acknowledged (offset, n) not received: {lost}"
        assert subscriber.other == []  # no other unsubscribe or disconnect push
    if len(publisher.epochs) > 1:  # the new primary lacked what subscribers had seen
        assert len(publisher.epochs) == 2
        assert all(any(not ok for _, ok in s.resyncs) for s in (direct, balanced))
    print(f"{len(acked)} acknowledged ({after_failover()} after the failover), "
          f"{publisher.failures} refused while the primary moved; "
          f"test body {time.monotonic() - started:.1f} s")


async def test_an_emulated_session_behind_the_balancer(cluster: dict[str, Any]) -> None:
    """centrifuge-js over HTTP streaming through nginx, which spreads the session's
    ``/emulation`` requests over the nodes (no sticky sessions): they are forwarded to
    the node holding the stream, and everything works."""
    from tests.functional.jsclient import JS_DIR, NODE, js_client_at

    if NODE is None or not (JS_DIR / "node_modules" / "eventsource").is_dir():
        pytest.skip("needs node and tests/js/node_modules")
    ports = cluster["ports"]
    base = f"127.0.0.1:{ports['balancer']}"
    endpoint = [{"transport": "http_stream", "endpoint": f"http://{base}/connection/http_stream"}]
    async with js_client_at(endpoint, f"http://{base}/emulation", "") as js, \
            aiohttp.ClientSession() as session:
        await js.call("connect")
        assert (await js.expect("connected"))["transport"] == "http_stream"
        for n in range(6):  # several commands: several chances to land elsewhere
            await js.call("subscribe" if n == 0 else "history", channel=f"emu-{n}" if n
                          else CHANNEL, limit=1)
        await js.expect("subscribed")
        assert "error" not in await js.call("publish", channel=CHANNEL, data={"n": -1})
        assert (await js.expect("publication", lambda e: e["data"] == {"n": -1}))

        forwarded = 0.0
        for port in ports["nodes"]:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                for line in (await response.text()).splitlines():
                    if line.startswith('chorus_emulation_requests_total{route="forwarded"}'):
                        forwarded += float(line.split()[-1])
        assert forwarded > 0, "nginx sent no /emulation request to another node"
